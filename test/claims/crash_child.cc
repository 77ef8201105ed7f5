// claims_crash_child: prepares one claim and dies by SIGKILL at a chosen write, as `kill -9`
// would kill the driver there. ClaimPreparerTest.Kill9AtEachStepOfAPrepareLosesNothing starts
// it with posix_spawn on the test's directory and API double, then checks what a fresh preparer
// makes of what is left.
//
// Usage: claims_crash_child DIR API_URL NAMESPACE NAME UID state|cdi PATH_SUBSTRING before|after
//   DIR holds sys/ and dev/ (the generated tree), cdi/ and state/ (the preparer's directories).
// Exits 2 on bad arguments or a failed preparer start, 3 when the crash point was never reached;
// a tree it cannot discover ends it with the exception naming DIR.
#include <cstdio>
#include <memory>
#include <string>

#include "claims_fixture.h"
#include "efadra/claims/claim_preparer.h"
#include "efadra/core/filesystem.h"
#include "faulty_filesystem.h"

int main(int argc, char** argv) {
  using efadra::claims::testing::FaultyFilesystem;
  if (argc != 9) {
    std::fprintf(stderr,
                 "usage: %s DIR API_URL NAMESPACE NAME UID state|cdi PATH_SUBSTRING before|after\n",
                 argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const std::string which = argv[6];
  const std::string when = argv[8];
  if ((which != "state" && which != "cdi") || (when != "before" && when != "after")) {
    std::fprintf(stderr, "claims_crash_child: bad filesystem %s or moment %s\n", which.c_str(),
                 when.c_str());
    return 2;
  }

  const auto inventory = efadra::claims::testing::DiscoverTree(dir);

  auto real_cdi = efadra::core::NewPosixFilesystem(dir + "/cdi");
  auto real_state = efadra::core::NewPosixFilesystem(dir + "/state");
  FaultyFilesystem cdi(*real_cdi);
  FaultyFilesystem state(*real_state);
  (which == "state" ? state : cdi)
      .CrashAt(argv[7], when == "before" ? FaultyFilesystem::CrashWhen::kBeforeWrite
                                         : FaultyFilesystem::CrashWhen::kAfterWrite);

  auto client = efadra::claims::testing::QuickRetryClient(argv[2]);
  efadra::claims::ClaimPreparer preparer(
      efadra::claims::testing::FixturePreparerOptions(dir, "boot-1"), *client, cdi, state,
      [inventory] { return inventory; });
  if (auto started = preparer.Start(); !started.ok()) {
    std::fprintf(stderr, "claims_crash_child: %s\n", started.ToString().c_str());
    return 2;
  }
  preparer.Prepare({{argv[3], argv[4], argv[5]}});
  return 3;  // the crash point was not reached
}
