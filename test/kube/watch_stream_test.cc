#include "efadra/kube/watch_stream.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace efadra::kube {
namespace {

struct Fed {
  Status status;
  std::vector<std::string> events;  // "TYPE name"
  bool stopped = false;
  std::string pending;
};

Fed FeedChunks(const std::vector<std::string>& chunks, size_t stop_after = 0) {
  Fed fed;
  auto on_event = [&](const WatchEvent& event) {
    std::string name;
    if (auto m = event.object.find("metadata"); m != event.object.end() && m->is_object()) {
      name = m->value("name", "");
    }
    fed.events.push_back(event.type + " " + name);
    return stop_after == 0 || fed.events.size() < stop_after;
  };
  for (const auto& chunk : chunks) {
    fed.status = ConsumeWatchChunk(fed.pending, chunk, on_event, &fed.stopped);
    if (!fed.status.ok() || fed.stopped) break;
  }
  return fed;
}

TEST(WatchStreamTest, LinesSplitAcrossChunksBecomeOneEventEach) {
  Fed fed = FeedChunks({"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"na", "me\":\"a\"}}}\n\n",
                        "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n{\"ty"});
  ASSERT_TRUE(fed.status.ok()) << fed.status.ToString();
  EXPECT_EQ(fed.events, (std::vector<std::string>{"ADDED a", "DELETED a"}));
  EXPECT_EQ(fed.pending, "{\"ty") << "an unfinished line waits for the next chunk";
}

TEST(WatchStreamTest, TheCallbackStopsTheStream) {
  Fed fed = FeedChunks({"{\"type\":\"ADDED\"}\n{\"type\":\"ADDED\"}\n{\"type\":\"ADDED\"}\n"}, 2);
  EXPECT_TRUE(fed.status.ok());
  EXPECT_TRUE(fed.stopped);
  EXPECT_EQ(fed.events.size(), 2u);
}

TEST(WatchStreamTest, AnErrorEventEndsTheStreamWithItsCode) {
  Fed fed = FeedChunks({"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,"
                        "\"message\":\"too old resource version\"}}\n{\"type\":\"ADDED\"}\n"});
  EXPECT_EQ(fed.status.code(), StatusCode::kOutOfRange);
  EXPECT_NE(fed.status.message().find("410 too old resource version"), std::string::npos)
      << fed.status.ToString();
  EXPECT_EQ(fed.events.size(), 1u) << "the caller sees the ERROR event, nothing after it";
}

// Mistyped fields are bad input, not an exception: a throw from here would cross libcurl's C
// write callback and end the process.
TEST(WatchStreamTest, MalformedLinesAreDataLossNamingTheLine) {
  struct Case {
    const char* line;
    StatusCode code;
  } cases[] = {
      {"not json", StatusCode::kDataLoss},
      {"[1,2]", StatusCode::kDataLoss},
      {"{\"type\":1,\"object\":{}}", StatusCode::kDataLoss},
      {"{\"type\":\"ADDED\",\"object\":\"x\"}", StatusCode::kDataLoss},
      {"{\"type\":\"ERROR\",\"object\":{\"code\":\"410\",\"message\":7}}", StatusCode::kUnavailable},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.line);
    Fed fed = FeedChunks({std::string(c.line) + "\n"});
    EXPECT_EQ(fed.status.code(), c.code) << fed.status.ToString();
    if (c.code == StatusCode::kDataLoss) {
      EXPECT_NE(fed.status.message().find(c.line), std::string::npos) << fed.status.ToString();
    }
  }
}

}  // namespace
}  // namespace efadra::kube
