// DecryptUse: Decrypts by key version with a bounded label, and foreign key_ids logged once.
#include "broker/vault/decrypt_use.h"

#include <gtest/gtest.h>

namespace vkms::broker {
namespace {

TEST(DecryptUseTest, CountsEachVersionAndWhenItWasLastNeeded) {
  DecryptUse u;
  u.Record(1, 3, false, "k1", 100);
  u.Record(1, 3, false, "k1", 150);
  u.Record(3, 3, false, "k3", 120);
  auto v = u.Versions(3);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].version, "3");
  EXPECT_EQ(v[0].decrypts, 1u);
  EXPECT_EQ(v[0].last_unix, 120);
  EXPECT_EQ(v[1].version, "1");
  EXPECT_EQ(v[1].decrypts, 2u);
  EXPECT_EQ(v[1].last_unix, 150);
  EXPECT_EQ(u.foreign_decrypts(), 0u);
}

TEST(DecryptUseTest, VersionsOlderThanTheLatestTenFoldIntoOlder) {
  DecryptUse u;
  for (uint64_t version = 1; version <= 40; ++version) {
    u.Record(version, 40, false, "k", static_cast<int64_t>(version));
  }
  auto v = u.Versions(40);
  ASSERT_EQ(v.size(), DecryptUse::kVersionsKept + 1);
  EXPECT_EQ(v.front().version, "40");
  EXPECT_EQ(v[DecryptUse::kVersionsKept - 1].version, "31");
  EXPECT_EQ(v.back().version, "older");
  EXPECT_EQ(v.back().decrypts, 30u);
  EXPECT_EQ(v.back().last_unix, 30);
}

TEST(DecryptUseTest, ARotationMovesVersionsIntoOlder) {
  DecryptUse u;
  u.Record(5, 5, false, "k", 10);
  u.Record(4, 5, false, "k", 11);
  // Reported against a newer latest version before any Decrypt sees it.
  auto v = u.Versions(14);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].version, "5");
  EXPECT_EQ(v[1].version, "older");
  EXPECT_EQ(v[1].decrypts, 1u);
  // Recorded later, the fold is kept: versions that left the window never come back.
  u.Record(15, 15, false, "k", 12);
  v = u.Versions(15);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].version, "15");
  EXPECT_EQ(v[1].version, "older");
  EXPECT_EQ(v[1].decrypts, 2u);
  EXPECT_EQ(v[1].last_unix, 11);
  // A version newer than the metadata says (read before the rotation) moves the window too.
  u.Record(30, 15, false, "k", 13);
  v = u.Versions(15);
  EXPECT_EQ(v[0].version, "30");
  EXPECT_EQ(v.back().decrypts, 3u);
}

TEST(DecryptUseTest, ForeignKeyIdsAreCountedAndAnnouncedOncePerKeyId) {
  DecryptUse u;
  EXPECT_TRUE(u.Record(1, 1, true, "1", 100));
  EXPECT_FALSE(u.Record(1, 1, true, "1", 101));
  EXPECT_TRUE(u.Record(1, 1, true, "vault-kube-kms-1", 102));
  EXPECT_FALSE(u.Record(1, 1, false, "transit/kms:v1:abc", 103));
  EXPECT_EQ(u.foreign_decrypts(), 3u);
  EXPECT_EQ(u.foreign_last_unix(), 102);
  // A flood of distinct key_ids (a compromised frontend) is announced a bounded number of times.
  size_t announced = 2;
  for (int i = 0; i < 100; ++i) announced += u.Record(1, 1, true, std::to_string(1000 + i), 200);
  EXPECT_EQ(announced, DecryptUse::kForeignIdsLogged);
  EXPECT_EQ(u.foreign_decrypts(), 103u);
}

}  // namespace
}  // namespace vkms::broker
