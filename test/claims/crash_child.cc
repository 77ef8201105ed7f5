// claims_crash_child: prepares (or prepares, then unprepares) one claim and dies by SIGKILL at a
// chosen step, as `kill -9` would kill the driver there. Kill9AtEachStepOfAPrepareLosesNothing
// and the durability tests start it with posix_spawn on the test's directory and API double,
// then check what a fresh preparer makes of what is left.
//
// Usage: claims_crash_child DIR API_URL NAMESPACE NAME UID state|cdi PATH_SUBSTRING MOMENT
//                           [prepare|unprepare]
//   DIR holds sys/ and dev/ (the generated tree), cdi/ and state/ (the preparer's directories).
//   MOMENT is "before" or "after" the first whole write of a path containing PATH_SUBSTRING, or
//   a step inside a write or removal, matched against the host path: "temp-written",
//   "file-synced", "renamed", "removed" or "directory-synced" (core::DiskStep). With
//   "unprepare" the claim is first prepared without a crash, and the crash is in its unprepare.
// Exits 2 on bad arguments or a failed preparer start, 3 when the crash point was never reached,
// 4 when the prepare before an unprepare failed; a tree it cannot discover ends it with the
// exception naming DIR.
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "claims_fixture.h"
#include "efadra/claims/claim_preparer.h"
#include "efadra/core/filesystem.h"
#include "faulty_filesystem.h"

int main(int argc, char** argv) {
  using efadra::claims::testing::CrashingDisk;
  using efadra::claims::testing::FaultyFilesystem;
  using efadra::core::DiskStep;
  if (argc != 9 && argc != 10) {
    std::fprintf(stderr,
                 "usage: %s DIR API_URL NAMESPACE NAME UID state|cdi PATH_SUBSTRING MOMENT "
                 "[prepare|unprepare]\n",
                 argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const std::string which = argv[6];
  const std::string when = argv[8];
  const std::string operation = argc == 10 ? argv[9] : "prepare";
  const std::map<std::string, DiskStep> steps = {
      {"temp-written", DiskStep::kTempFileWritten}, {"file-synced", DiskStep::kFileSynced},
      {"renamed", DiskStep::kRenamed},              {"removed", DiskStep::kRemoved},
      {"directory-synced", DiskStep::kDirectorySynced}};
  std::optional<DiskStep> step;
  if (auto it = steps.find(when); it != steps.end()) step = it->second;
  if ((which != "state" && which != "cdi") ||
      (when != "before" && when != "after" && !step) ||
      (operation != "prepare" && operation != "unprepare")) {
    std::fprintf(stderr, "claims_crash_child: bad filesystem %s, moment %s or operation %s\n",
                 which.c_str(), when.c_str(), operation.c_str());
    return 2;
  }

  const auto inventory = efadra::claims::testing::DiscoverTree(dir);

  CrashingDisk crashing;
  auto real_cdi = efadra::core::NewPosixFilesystem(dir + "/cdi", which == "cdi" ? &crashing : nullptr);
  auto real_state =
      efadra::core::NewPosixFilesystem(dir + "/state", which == "state" ? &crashing : nullptr);
  FaultyFilesystem cdi(*real_cdi);
  FaultyFilesystem state(*real_state);
  auto arm = [&] {
    if (step) {
      crashing.Arm(*step, argv[7]);
    } else {
      (which == "state" ? state : cdi)
          .CrashAt(argv[7], when == "before" ? FaultyFilesystem::CrashWhen::kBeforeWrite
                                             : FaultyFilesystem::CrashWhen::kAfterWrite);
    }
  };

  auto client = efadra::claims::testing::QuickRetryClient(argv[2]);
  efadra::claims::ClaimPreparer preparer(
      efadra::claims::testing::FixturePreparerOptions(dir, "boot-1"), *client, cdi, state,
      [inventory] { return inventory; });
  if (auto started = preparer.Start(); !started.ok()) {
    std::fprintf(stderr, "claims_crash_child: %s\n", started.ToString().c_str());
    return 2;
  }
  const efadra::claims::ClaimRef claim{argv[3], argv[4], argv[5]};
  if (operation == "prepare") {
    arm();
    preparer.Prepare({claim});
    return 3;  // the crash point was not reached
  }
  if (auto prepared = preparer.Prepare({claim})[claim.uid]; !prepared.status.ok()) {
    std::fprintf(stderr, "claims_crash_child: %s\n", prepared.status.ToString().c_str());
    return 4;
  }
  arm();
  preparer.Unprepare({claim});
  return 3;
}
