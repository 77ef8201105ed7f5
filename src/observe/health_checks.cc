#include "efadra/observe/health_checks.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace efadra::observe {
namespace {

// "UNAVAILABLE" -> "unavailable", "FAILED_PRECONDITION" -> "failed precondition": the only
// thing about a failure that leaves the process over HTTP. The message can hold API URLs and
// response bodies, and the port is open to the node network, so it goes to the log only.
std::string Category(StatusCode code) {
  std::string category(StatusCodeName(code));
  for (char& c : category) {
    if (c == '_') {
      c = ' ';
    } else if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return category;
}

}  // namespace

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
  if (auto it = last_.find(name); it != last_.end()) last_.erase(it);
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
      lines += "[-]" + name + " failed: " + Category(status.code()) + "\n";
    }
    results.emplace_back(name, std::move(status));
  }
  {
    // Log transitions, and a failing check whose message changes, so a probe every few
    // seconds adds nothing at steady state while the log keeps the detail the HTTP body no
    // longer shows. A check is assumed healthy before its first run, so starting healthy logs
    // nothing.
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, status] : results) {
      auto [it, inserted] = last_.try_emplace(name);
      if (status.ok()) {
        if (!it->second.has_value()) continue;
        it->second.reset();
        spdlog::info("{} check {} passes again", endpoint_, name);
        continue;
      }
      if (it->second == status.message()) continue;
      it->second = status.message();
      spdlog::warn("{} check {} failed: {}", endpoint_, name, status.message());
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
