// The real driver binary as a child process, and what it needs to reach an API double: shared
// by the e2e tests that run `efa-dra-driver run`.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

namespace efadra::testing {

// A kubeconfig for `server` with a bearer token.
inline std::string Kubeconfig(const std::string& server) {
  return "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
         "clusters:\n- name: fake\n  cluster:\n    server: " +
         server +
         "\ncontexts:\n- name: test\n  context:\n    cluster: fake\n    user: u\n"
         "users:\n- name: u\n  user:\n    token: t\n";
}

// A loopback TCP port nobody listens on at the moment of the call.
inline int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  const int port = ntohs(address.sin_port);
  ::close(fd);
  return port;
}

// A child process with its stderr appended to a file; killed on destruction if still running,
// and by the kernel if this test process dies first (a test killed on timeout must not leave a
// driver running).
class Child {
 public:
  // `env` entries ("NAME=value") replace or add to this process's environment.
  Child(const std::vector<std::string>& args, const std::string& log_path,
        const std::vector<std::string>& env = {}) {
    // Everything is allocated before fork: this process has threads (the API double), and a
    // lock one of them held at the fork (malloc's, ASan's) would never be released in the child.
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<std::string> environment = env;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      const std::string name = entry.substr(0, entry.find('=') + 1);
      if (std::none_of(env.begin(), env.end(),
                       [&](const std::string& o) { return o.rfind(name, 0) == 0; })) {
        environment.push_back(entry);
      }
    }
    std::vector<char*> envp;
    for (auto& e : environment) envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // Only system calls from here to exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
      const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (log >= 0) ::dup2(log, 2);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
  }
  ~Child() { Kill(); }
  bool Running() {
    Poll();
    return !exited_;
  }
  // Exit code, or -1 while running / when killed by a signal.
  int ExitCode() {
    Poll();
    return exited_ && WIFEXITED(status_) ? WEXITSTATUS(status_) : -1;
  }
  void Signal(int sig) { ::kill(pid_, sig); }
  void Kill() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status_, 0);
      exited_ = true;
    }
  }

 private:
  void Poll() {
    if (exited_ || pid_ <= 0) return;
    if (::waitpid(pid_, &status_, WNOHANG) == pid_) exited_ = true;
  }
  pid_t pid_ = -1;
  int status_ = 0;
  bool exited_ = false;
};

}  // namespace efadra::testing
