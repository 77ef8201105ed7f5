#include "efadra/core/filesystem.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <gtest/gtest.h>

#include "support/test_support.h"

namespace efadra::core {
namespace {

using efadra::testing::ReadFileOrEmpty;
using efadra::testing::TempDir;
using efadra::testing::WriteFileOrDie;

TEST(PathTest, CleanPath) {
  struct Case {
    const char* in;
    const char* want;
  } cases[] = {
      {"/sys/bus/pci/devices/../../../devices/pci0000:10/0000:10:1b.0",
       "/sys/devices/pci0000:10/0000:10:1b.0"},
      {"bus/pci/devices/../../../devices/pci0000:10", "devices/pci0000:10"},
      {"/../a//b/./c/", "/a/b/c"},
      {"a/../../b", "../b"},
      {"", "."},
      {"/", "/"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    EXPECT_EQ(CleanPath(c.in), c.want);
  }
}

TEST(PathTest, BaseAndDirName) {
  EXPECT_EQ(BaseName("/sys/devices/pci0000:10/0000:10:1b.0"), "0000:10:1b.0");
  EXPECT_EQ(BaseName("../../bus/pci/drivers/efa"), "efa");
  EXPECT_EQ(BaseName("/"), "");
  EXPECT_EQ(DirName("/a/b/c"), "/a/b");
  EXPECT_EQ(DirName("/a"), "/");
  EXPECT_EQ(JoinPath("/a/", "/b"), "/a/b");
  EXPECT_EQ(JoinPath("/a", "b"), "/a/b");
}

TEST(PosixFilesystemTest, PathsAreRootedAndCannotEscape) {
  TempDir dir;
  WriteFileOrDie(dir.Sub("class/x/value"), "42\n");
  auto fs = NewPosixFilesystem(dir.path());
  auto content = fs->ReadFile("/class/x/value");
  ASSERT_TRUE(content.ok()) << content.status().ToString();
  EXPECT_EQ(*content, "42\n");
  EXPECT_EQ(fs->HostPath("/../../etc/passwd"), dir.path() + "/etc/passwd");
}

TEST(PosixFilesystemTest, ErrorsNameTheHostPath) {
  TempDir dir;
  auto fs = NewPosixFilesystem(dir.path());
  auto missing = fs->ReadFile("/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(dir.path() + "/nope"), std::string::npos);
}

TEST(PosixFilesystemTest, ReadFileEnforcesTheSizeLimit) {
  TempDir dir;
  WriteFileOrDie(dir.Sub("big"), std::string(5000, 'x'));
  auto fs = NewPosixFilesystem(dir.path());
  EXPECT_EQ(fs->ReadFile("/big", 4096).status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(fs->ReadFile("/big", 5000).ok());
}

TEST(PosixFilesystemTest, SymlinksAndListing) {
  TempDir dir;
  WriteFileOrDie(dir.Sub("devices/pci0000:10/0000:10:1b.0/vendor"), "0x1d0f\n");
  std::filesystem::create_directories(dir.Sub("bus/pci/devices"));
  std::filesystem::create_directory_symlink("../../../devices/pci0000:10/0000:10:1b.0",
                                            dir.Sub("bus/pci/devices/0000:10:1b.0"));
  auto fs = NewPosixFilesystem(dir.path());
  auto link = fs->ReadLink("/bus/pci/devices/0000:10:1b.0");
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(*link, "../../../devices/pci0000:10/0000:10:1b.0");
  EXPECT_EQ(*fs->ReadFile("/bus/pci/devices/0000:10:1b.0/vendor"), "0x1d0f\n");
  auto names = fs->ListDir("/bus/pci/devices");
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"0000:10:1b.0"});
  auto info = fs->Stat("/bus/pci/devices/0000:10:1b.0", /*follow_symlinks=*/false);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->type, FileType::kSymlink);
  EXPECT_EQ(fs->ReadLink("/devices").status().code(), StatusCode::kInvalidArgument);
}

TEST(PosixFilesystemTest, AtomicWriteReplacesAndLeavesNoTemporaries) {
  TempDir dir;
  auto fs = NewPosixFilesystem(dir.path());
  ASSERT_TRUE(fs->CreateDirectories("/state/claims").ok());
  ASSERT_TRUE(fs->WriteFileAtomic("/state/claims/a.json", "one", {.durable = true}).ok());
  ASSERT_TRUE(fs->WriteFileAtomic("/state/claims/a.json", "two", {.durable = false, .mode = 0600})
                  .ok());
  EXPECT_EQ(ReadFileOrEmpty(dir.Sub("state/claims/a.json")), "two");
  EXPECT_EQ(*fs->ListDir("/state/claims"), std::vector<std::string>{"a.json"});
  EXPECT_EQ(fs->Stat("/state/claims/a.json")->mode, 0600u);
  ASSERT_TRUE(fs->RemoveFile("/state/claims/a.json").ok());
  EXPECT_TRUE(fs->RemoveFile("/state/claims/a.json").ok()) << "removing twice is fine";
  EXPECT_FALSE(fs->Exists("/state/claims/a.json"));
}

TEST(PosixFilesystemTest, AtomicWriteIntoMissingDirectoryFailsCleanly) {
  TempDir dir;
  auto fs = NewPosixFilesystem(dir.path());
  Status s = fs->WriteFileAtomic("/missing/a.json", "x", {});
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find("missing"), std::string::npos);
}

TEST(PosixFilesystemTest, CreateDirectoriesOverAFileFails) {
  TempDir dir;
  WriteFileOrDie(dir.Sub("file"), "x");
  auto fs = NewPosixFilesystem(dir.path());
  EXPECT_FALSE(fs->CreateDirectories("/file").ok());
  EXPECT_TRUE(fs->CreateDirectories("/a/b/c").ok());
  EXPECT_TRUE(fs->CreateDirectories("/a/b/c").ok());
}

TEST(PosixFilesystemTest, StatReportsCharDeviceNumbers) {
  TempDir dir;
  std::filesystem::create_directories(dir.Sub("infiniband"));
  // Root is not enough: an ordinary container (podman's default capabilities lack CAP_MKNOD)
  // refuses mknod with EPERM, so the test skips there, visibly, like the other mknod tests.
  if (::mknod(dir.Sub("infiniband/uverbs0").c_str(), S_IFCHR | 0666, makedev(231, 192)) != 0) {
    const int err = errno;
    if (err == EPERM || err == EACCES) {
      GTEST_SKIP() << "mknod of a char device was refused here (needs root with CAP_MKNOD): "
                   << std::strerror(err);
    }
    FAIL() << "mknod: " << std::strerror(err);
  }
  auto fs = NewPosixFilesystem(dir.path());
  auto info = fs->Stat("/infiniband/uverbs0");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->type, FileType::kCharDevice);
  EXPECT_EQ(info->device_major, 231u);
  EXPECT_EQ(info->device_minor, 192u);
}

// Records the steps of the disk as text: "temp-written a.json one" etc., names only.
class StepRecorder final : public DiskObserver {
 public:
  void AfterStep(const DiskEvent& event) override {
    static constexpr const char* kNames[] = {"temp-written", "file-synced", "renamed", "removed",
                                             "directory-synced"};
    std::string line = kNames[static_cast<int>(event.step)];
    line += " " + std::string(BaseName(event.path));
    if (!event.content.empty()) line += " " + std::string(event.content);
    steps.push_back(line);
  }
  std::vector<std::string> steps;
};

TEST(PosixFilesystemTest, AtomicWriteReportsEachStepToTheObserver) {
  TempDir dir;
  StepRecorder recorder;
  auto fs = NewPosixFilesystem(dir.path(), &recorder);
  ASSERT_TRUE(fs->CreateDirectories("/state").ok());
  ASSERT_TRUE(fs->WriteFileAtomic("/state/a.json", "one", {.durable = true}).ok());
  ASSERT_EQ(recorder.steps.size(), 4u);
  EXPECT_EQ(recorder.steps[0].rfind("temp-written .a.json.tmp.", 0), 0u) << recorder.steps[0];
  EXPECT_EQ(recorder.steps[0].substr(recorder.steps[0].size() - 4), " one");
  EXPECT_EQ(recorder.steps[1].rfind("file-synced .a.json.tmp.", 0), 0u) << recorder.steps[1];
  EXPECT_EQ(recorder.steps[2], "renamed a.json");
  EXPECT_EQ(recorder.steps[3], "directory-synced state");

  recorder.steps.clear();
  ASSERT_TRUE(fs->WriteFileAtomic("/state/a.json", "two", {.durable = false}).ok());
  ASSERT_EQ(recorder.steps.size(), 2u) << "no fsync of a write that need not be durable";
  EXPECT_EQ(recorder.steps[1], "renamed a.json");

  recorder.steps.clear();
  ASSERT_TRUE(fs->RemoveFile("/state/a.json").ok());
  ASSERT_TRUE(fs->RemoveFile("/state/a.json").ok());
  ASSERT_TRUE(fs->SyncDirectory("/state").ok());
  EXPECT_EQ(recorder.steps, (std::vector<std::string>{"removed a.json", "directory-synced state"}))
      << "a removal of nothing is not a step";
}

}  // namespace
}  // namespace efadra::core
