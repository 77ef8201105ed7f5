/* The pod sandbox's process for the real-cluster tier (the role of registry.k8s.io/pause,
 * which cannot be pulled here): holds the pod's namespaces open, reaps the zombies the pod's
 * other processes leave to it as PID 1, and exits on SIGINT or SIGTERM. Built statically by
 * up.sh and imported into containerd as the sandbox image. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signal_number) {
  (void)signal_number;
  _exit(0);
}

static void reap(int signal_number) {
  (void)signal_number;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction action = {0};
  action.sa_handler = stop;
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);
  action.sa_handler = reap;
  action.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &action, NULL);
  for (;;) pause();
  return 0;
}
