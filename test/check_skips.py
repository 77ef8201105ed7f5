#!/usr/bin/python3
"""check_skips.py ALLOWLIST CTEST_LOG: fails (exit 1) when ctest skipped a test that ALLOWLIST
does not name, so a test that quietly stops running in CI (a tool went missing, a check turned
into a skip) breaks the build instead of shrinking it.

ALLOWLIST has one "TestName: reason" line per test that may skip (# comments and blank lines
are ignored); a line without a reason is an error. CTEST_LOG is ctest's output, whose closing
"The following tests did not run:" list names each skipped test as "N - Name (Skipped)"."""
import re
import sys


def read_allowlist(path):
    allowed, errors = {}, []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, reason = line.partition(":")
            if not reason.strip() or not name.strip() or " " in name.strip():
                errors.append("%s:%d: expected \"TestName: reason\", got %r" % (path, number, line))
                continue
            allowed[name.strip()] = reason.strip()
    return allowed, errors


def skipped_tests(log_path):
    skipped, in_list = [], False
    with open(log_path, errors="replace") as f:
        for line in f:
            if line.startswith("The following tests did not run:"):
                in_list = True
                continue
            if in_list:
                match = re.match(r"\s*\d+ - (\S+) \((Skipped|Disabled)\)\s*$", line)
                if match:
                    skipped.append(match.group(1))
                elif line.strip():
                    in_list = False
    return skipped


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    allowed, errors = read_allowlist(sys.argv[1])
    for error in errors:
        print(error)
    skipped = skipped_tests(sys.argv[2])
    unexpected = [name for name in skipped if name not in allowed]
    for name in skipped:
        if name in allowed:
            print("skipped, allowed: %s (%s)" % (name, allowed[name]))
    for name in unexpected:
        print("FAIL: %s was skipped and is not in %s" % (name, sys.argv[1]))
    print("%d skipped, %d allowed, %d not allowed" %
          (len(skipped), len(skipped) - len(unexpected), len(unexpected)))
    return 1 if unexpected or errors else 0


if __name__ == "__main__":
    sys.exit(main())
