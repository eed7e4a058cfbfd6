#include "shared/ipc.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace vkms::ipc {

bool Encode(const google::protobuf::Message& msg, std::string* frame, std::string* error) {
  if (!msg.SerializeToString(frame)) {
    *error = "cannot serialize " + msg.GetTypeName();
    return false;
  }
  if (frame->empty() || frame->size() > kMaxFrame) {
    *error = "frame size " + std::to_string(frame->size()) + " out of range";
    return false;
  }
  return true;
}

SendStatus TrySend(int fd, const std::string& frame, std::string* error) {
  for (;;) {
    ssize_t n = send(fd, frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == static_cast<ssize_t>(frame.size())) return SendStatus::kSent;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      *error = "peer is not reading (send buffer full)";
      return SendStatus::kFull;
    }
    *error = n < 0 ? std::string("send: ") + strerror(errno) : "short send";
    return SendStatus::kFailed;
  }
}

bool Send(int fd, const google::protobuf::Message& msg,
          std::chrono::steady_clock::time_point deadline, std::string* error) {
  std::string frame;
  if (!Encode(msg, &frame, error)) return false;
  for (;;) {
    SendStatus st = TrySend(fd, frame, error);
    if (st != SendStatus::kFull) return st == SendStatus::kSent;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    struct pollfd p = {fd, POLLOUT, 0};
    poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
  }
}

RecvStatus Recv(int fd, google::protobuf::Message* msg, std::string* error, bool dont_wait) {
  // One byte more than the limit, so that an oversize datagram is seen even without MSG_TRUNC.
  thread_local std::vector<char> buf(kMaxFrame + 1);
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  struct iovec iov = {buf.data(), buf.size()};
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(fd, &mh, MSG_TRUNC | MSG_CMSG_CLOEXEC | (dont_wait ? MSG_DONTWAIT : 0));
  } while (n < 0 && errno == EINTR);
  if (n < 0 && dont_wait && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return RecvStatus::kWouldBlock;
  }
  if (n < 0) {
    *error = std::string("recvmsg: ") + strerror(errno);
    return errno == ECONNRESET ? RecvStatus::kClosed : RecvStatus::kIoError;
  }
  if (n == 0 && mh.msg_controllen == 0) {
    // SOCK_SEQPACKET reports EOF and an empty datagram alike; only EOF leaves the peer hung up.
    struct pollfd p = {fd, POLLRDHUP, 0};
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP))) return RecvStatus::kClosed;
    *error = "empty frame";
    return RecvStatus::kProtocolError;
  }
  if (mh.msg_controllen > 0 || (mh.msg_flags & MSG_CTRUNC)) {
    // Nobody may pass descriptors or credentials over this channel: close what came and refuse.
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int passed;
          memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
          close(passed);
        }
      }
    }
    *error = "ancillary data on the IPC channel";
    return RecvStatus::kProtocolError;
  }
  if ((mh.msg_flags & MSG_TRUNC) || static_cast<size_t>(n) > kMaxFrame) {
    *error = "frame of " + std::to_string(n) + " bytes exceeds the " + std::to_string(kMaxFrame) +
             "-byte limit";
    return RecvStatus::kProtocolError;
  }
  return Decode(buf.data(), static_cast<size_t>(n), msg, error);
}

RecvStatus Decode(const void* data, size_t size, google::protobuf::Message* msg,
                  std::string* error) {
  if (size == 0) {
    *error = "empty frame";
    return RecvStatus::kProtocolError;
  }
  if (size > kMaxFrame) {
    *error = "frame exceeds the size limit";
    return RecvStatus::kProtocolError;
  }
  msg->Clear();
  if (!msg->ParseFromArray(data, static_cast<int>(size))) {
    *error = "frame does not parse as " + msg->GetTypeName();
    return RecvStatus::kProtocolError;
  }
  if (HasUnknownFields(*msg)) {
    *error = "frame carries fields unknown to " + msg->GetTypeName();
    return RecvStatus::kProtocolError;
  }
  return RecvStatus::kOk;
}

bool HasUnknownFields(const google::protobuf::Message& msg) {
  const google::protobuf::Reflection* refl = msg.GetReflection();
  if (!refl->GetUnknownFields(msg).empty()) return true;
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  refl->ListFields(msg, &fields);
  for (const auto* f : fields) {
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < refl->FieldSize(msg, f); ++i) {
        if (HasUnknownFields(refl->GetRepeatedMessage(msg, f, i))) return true;
      }
    } else if (HasUnknownFields(refl->GetMessage(msg, f))) {
      return true;
    }
  }
  return false;
}

}  // namespace vkms::ipc
