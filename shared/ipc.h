// The frontend ↔ broker channel: one protobuf message per SOCK_SEQPACKET datagram.
//
// Both processes call these. Receiving is strict because the broker treats the frontend as
// possibly compromised: a datagram larger than kMaxFrame (detected with MSG_TRUNC), an empty
// one, one carrying file descriptors or other ancillary data, one that does not parse, or one
// with fields this schema does not know is a protocol error — the caller logs it and closes
// the channel. Sending is thread-safe: the kernel keeps each datagram whole.
#pragma once

#include <google/protobuf/message.h>

#include <chrono>
#include <cstddef>
#include <string>

#include "broker.pb.h"

namespace vkms::ipc {

constexpr size_t kMaxFrame = 64 * 1024;

// Fixed descriptor numbers at which the broker hands the frontend its inherited fds: the IPC
// channel, the KMS listening socket and the metrics listener (bound by the broker for
// --metrics-listen). 0 is /dev/null; 1 and 2 are a pipe the broker reads (its log relay).
constexpr int kFrontendIpcFd = 3;
constexpr int kFrontendListenFd = 4;
constexpr int kFrontendMetricsFd = 5;

enum class RecvStatus {
  kOk,
  kClosed,         // orderly EOF: the peer closed its end or exited
                   // (an empty datagram is not EOF: it is a protocol error)
  kProtocolError,  // malformed input; *error says what, without echoing the bytes
  kIoError,
};

// Sends one message without ever blocking past `deadline`: when the peer is not reading and
// the socket buffer is full, waits for room until then and gives up ("peer is not reading").
// Neither process can be wedged by a peer that stops reading.
bool Send(int fd, const google::protobuf::Message& msg,
          std::chrono::steady_clock::time_point deadline, std::string* error);

// Blocks for one datagram and decodes it into *msg.
RecvStatus Recv(int fd, google::protobuf::Message* msg, std::string* error);

// Decodes one frame (no I/O): used by Recv and directly by the fuzz target.
RecvStatus Decode(const void* data, size_t size, google::protobuf::Message* msg,
                  std::string* error);

// True if msg or any message nested in it carries fields unknown to this schema.
bool HasUnknownFields(const google::protobuf::Message& msg);

}  // namespace vkms::ipc
