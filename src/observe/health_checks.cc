#include "efadra/observe/health_checks.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace efadra::observe {

void HealthChecks::Add(std::string name, std::function<Status()> check) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(checks_.begin(), checks_.end(),
                         [&](const auto& entry) { return entry.first == name; });
  if (it != checks_.end()) {
    it->second = std::move(check);
  } else {
    checks_.emplace_back(std::move(name), std::move(check));
  }
}

void HealthChecks::Remove(std::string_view name) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(checks_, [&](const auto& entry) { return entry.first == name; });
  if (auto it = last_ok_.find(name); it != last_ok_.end()) last_ok_.erase(it);
}

CheckReport HealthChecks::Run(bool verbose, const std::set<std::string, std::less<>>& exclude) {
  // Copy the checks so they run without the lock: a slow or re-entrant check must not block
  // Add() or another probe.
  std::vector<std::pair<std::string, std::function<Status()>>> checks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    checks = checks_;
  }
  CheckReport report;
  std::string lines;
  std::vector<std::pair<std::string, Status>> results;
  for (const auto& [name, check] : checks) {
    if (exclude.contains(name)) {
      lines += "[+]" + name + " excluded: ok\n";
      continue;
    }
    Status status = check ? check() : Status::Ok();
    if (status.ok()) {
      lines += "[+]" + name + " ok\n";
    } else {
      report.ok = false;
      report.failed.push_back(name);
      lines += "[-]" + name + " failed: " + status.message() + "\n";
    }
    results.emplace_back(name, std::move(status));
  }
  {
    // Log transitions only, so a probe every few seconds adds nothing at steady state. A
    // check is assumed healthy before its first run, so starting healthy logs nothing.
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, status] : results) {
      auto [it, inserted] = last_ok_.try_emplace(name, true);
      if (it->second == status.ok()) continue;
      it->second = status.ok();
      if (status.ok()) {
        spdlog::info("{} check {} passes again", endpoint_, name);
      } else {
        spdlog::warn("{} check {} failed: {}", endpoint_, name, status.message());
      }
    }
  }
  if (report.ok && !verbose) {
    report.body = "ok";
  } else {
    report.body = lines + endpoint_ + (report.ok ? " check passed\n" : " check failed\n");
  }
  return report;
}

}  // namespace efadra::observe
