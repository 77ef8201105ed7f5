// The run command's Daemon: component order, failure handling, and shutdown by a real SIGTERM
// read from its signalfd.
#include "daemon.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"

namespace efadra::cmd {
namespace {

class Journal {
 public:
  void Add(std::string entry) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.push_back(std::move(entry));
  }
  std::vector<std::string> Entries() {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> entries_;
};

class RecordingComponent : public Component {
 public:
  RecordingComponent(std::string name, Journal& journal, Status start = Status::Ok())
      : name_(std::move(name)), journal_(journal), start_(std::move(start)) {}
  std::string_view Name() const override { return name_; }
  Status Start() override {
    journal_.Add("start " + name_);
    return start_;
  }
  void Stop() override { journal_.Add("stop " + name_); }

 private:
  std::string name_;
  Journal& journal_;
  Status start_;
};

TEST(DaemonTest, StartsInOrderStopsInReverseOnRequest) {
  Journal journal;
  Daemon daemon;
  daemon.Add(std::make_unique<RecordingComponent>("a", journal));
  daemon.Add(std::make_unique<RecordingComponent>("b", journal));
  std::thread stopper([&] {
    ASSERT_TRUE(efadra::testing::WaitFor([&] { return journal.Entries().size() == 2; }));
    daemon.RequestStop();
  });
  EXPECT_TRUE(daemon.Run().ok());
  stopper.join();
  EXPECT_EQ(journal.Entries(),
            (std::vector<std::string>{"start a", "start b", "stop b", "stop a"}));
}

TEST(DaemonTest, FailedStartStopsWhatStarted) {
  Journal journal;
  Daemon daemon;
  daemon.Add(std::make_unique<RecordingComponent>("a", journal));
  daemon.Add(std::make_unique<RecordingComponent>("b", journal, UnavailableError("port busy")));
  daemon.Add(std::make_unique<RecordingComponent>("c", journal));
  const Status status = daemon.Run();
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "start b: port busy");
  EXPECT_EQ(journal.Entries(), (std::vector<std::string>{"start a", "start b", "stop a"}));
}

TEST(DaemonTest, SigtermStopsWithinASecond) {
  for (int sig : {SIGTERM, SIGINT}) {
    SCOPED_TRACE(sig);
    Journal journal;
    Daemon daemon;
    daemon.Add(std::make_unique<RecordingComponent>("a", journal));
    const pthread_t runner = pthread_self();
    std::chrono::steady_clock::time_point sent;
    std::thread sender([&] {
      ASSERT_TRUE(efadra::testing::WaitFor([&] { return journal.Entries().size() == 1; }));
      sent = std::chrono::steady_clock::now();
      // Directed at the thread that blocked it, so it stays pending for the signalfd.
      pthread_kill(runner, sig);
    });
    EXPECT_TRUE(daemon.Run().ok());
    const auto stopped = std::chrono::steady_clock::now();
    sender.join();
    EXPECT_LT(stopped - sent, std::chrono::seconds(1));
    EXPECT_EQ(journal.Entries(), (std::vector<std::string>{"start a", "stop a"}));
  }
}

}  // namespace
}  // namespace efadra::cmd
