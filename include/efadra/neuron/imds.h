// Optional cross-check of the instance type against the EC2 instance metadata service (IMDSv2).
// The device-group tables are keyed on DMI product_name (what CDM uses); this lets the caller
// confirm it behind a flag. Thread-safe (each call uses its own connection). The first call
// sets SIGPIPE to ignored for the process.
#pragma once

#include <chrono>
#include <string>

#include "efadra/core/status.h"

namespace efadra::neuron {

inline constexpr char kImdsDefaultEndpoint[] = "http://169.254.169.254";

// PUT <endpoint>/latest/api/token (X-aws-ec2-metadata-token-ttl-seconds), then
// GET <endpoint>/latest/meta-data/instance-type with the token. `timeout` bounds both requests
// together. Never goes through a proxy. Errors name the endpoint and the request:
//   kUnavailable       connection refused / no route (no IMDS: not on EC2, or hop limit)
//   kDeadlineExceeded  no answer within `timeout`
//   kUnauthenticated   401 from IMDS (token rejected)
//   kUnavailable       any other HTTP status, with the status in the message
//   kInvalidArgument   the answer is not a plausible instance type ("trn2.48xlarge")
Result<std::string> QueryImdsInstanceType(
    const std::string& endpoint = kImdsDefaultEndpoint,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(500));

}  // namespace efadra::neuron
