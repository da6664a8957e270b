#pragma once
// How the transports open connections. Internal to src/aws; no curl types here.

#include <chrono>
#include <string>

namespace sqs2pg::aws {

struct TransportOptions {
  // TCP (and TLS) connection set-up, per attempt.
  std::chrono::milliseconds connect_timeout{3000};
  // PEM file of the CA certificates trusted for https:// endpoints (CURLOPT_CAINFO); empty: the
  // system's store. Peer and host verification are always on: there is deliberately no switch
  // to turn them off, so a private CA is trusted by naming it, never by trusting everyone.
  std::string ca_file;
};

}  // namespace sqs2pg::aws
