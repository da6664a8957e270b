#include "transform/masker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "common/encoding.h"
#include "transform/test_keys.h"

namespace sqs2pg::transform {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

using testing::Material;

// Newest first, like a key file.
Keyring RingOf(const std::vector<std::string>& materials) {
  std::string text;
  for (const std::string& m : materials) {
    text += std::string(Keyring::kLineTag) + " " + Keyring::KeyIdFor(m) + " " + HexEncode(m) + "\n";
  }
  return *Keyring::Parse(text);
}

Masker MakeMasker(const Keyring& ring) {
  Result<Masker> masker = Masker::Create(ring);
  EXPECT_TRUE(masker.ok()) << masker.status().message();
  return std::move(masker).value();
}

std::string MustMask(Masker& masker, std::string_view plaintext) {
  Result<std::string> masked = masker.Mask(plaintext);
  EXPECT_TRUE(masked.ok()) << masked.status().message();
  return masked.ok() ? *masked : std::string();
}

const std::string kOld = Material(0);     // id 60f7f036
const std::string kNew = Material(0xa0);  // id 8f7b26e3

TEST(MaskerTest, IsDeterministicAndCarriesTheKeyId) {
  Masker a = MakeMasker(RingOf({kOld}));
  Masker b = MakeMasker(RingOf({kOld}));
  std::string masked = MustMask(a, "203.0.113.7");
  EXPECT_EQ(MustMask(a, "203.0.113.7"), masked);
  EXPECT_EQ(MustMask(b, "203.0.113.7"), masked);
  EXPECT_THAT(masked, StartsWith("60f7f036."));
  EXPECT_EQ(masked.size(), Masker::MaskedLength(11));
  EXPECT_EQ(a.active_key_id(), "60f7f036");
}

// Issue 17 item 16, as docs/analytics.md says it: device_id is compared byte for byte, so case,
// whitespace and Unicode-normalisation variants of one device mask differently; and an siv value's
// length tells the plaintext's byte length (nothing else).
TEST(MaskerTest, DeviceIdIsComparedByteForByte) {
  Masker m = MakeMasker(RingOf({kOld}));
  const std::string variants[] = {"ABC-123",     "abc-123", " ABC-123", "ABC-123 ",
                                  "caf\xc3\xa9",    // é as one code point (NFC)
                                  "cafe\xcc\x81"};  // e + combining acute (NFD)
  std::set<std::string> masked;
  for (const std::string& v : variants) {
    auto out = m.MaskValue(MaskField::kDeviceId, v);
    ASSERT_TRUE(out.ok()) << out.status().message();
    masked.insert(*out);
  }
  EXPECT_EQ(masked.size(), std::size(variants));
  EXPECT_EQ(m.MaskValue(MaskField::kDeviceId, "ABC-123")->size(), Masker::MaskedLength(7));
  EXPECT_EQ(m.MaskValue(MaskField::kDeviceId, std::string(36, 'x'))->size(), Masker::MaskedLength(36));
}

TEST(MaskerTest, DifferentKeysOrValuesGiveDifferentResults) {
  Masker old_masker = MakeMasker(RingOf({kOld}));
  Masker new_masker = MakeMasker(RingOf({kNew}));
  std::string under_old = MustMask(old_masker, "593-47-5928");
  std::string under_new = MustMask(new_masker, "593-47-5928");
  EXPECT_NE(under_old.substr(9), under_new.substr(9));
  // Neighbouring values share nothing visible: the synthetic IV in front changes completely.
  std::string a = MustMask(old_masker, "10.0.0.1");
  std::string b = MustMask(old_masker, "10.0.0.2");
  EXPECT_NE(a.substr(9, 4), b.substr(9, 4));
}

TEST(MaskerTest, RoundTripsAssortedValues) {
  Masker masker = MakeMasker(RingOf({kOld}));
  const std::string values[] = {
      "x",
      "203.0.113.7",
      "2001:db8:85a3::8a2e:370:7334",
      "593-47-5928",
      "Zürich-ノート-📱",
      std::string("\0\x01\xff", 3),
      std::string(Masker::MaxPlaintextBytes(256), 'm'),
      std::string(10000, 'L'),
  };
  for (const std::string& value : values) {
    std::string masked = MustMask(masker, value);
    EXPECT_EQ(masked.size(), Masker::MaskedLength(value.size()));
    Result<std::string> unmasked = masker.Unmask(masked);
    ASSERT_TRUE(unmasked.ok()) << unmasked.status().message();
    EXPECT_EQ(*unmasked, value);
  }
}

TEST(MaskerTest, MaskIntoReusesTheBufferAndMatchesMask) {
  Masker masker = MakeMasker(RingOf({kOld}));
  std::string out = "stale";
  ASSERT_TRUE(masker.MaskInto("203.0.113.7", out).ok());
  EXPECT_EQ(out, MustMask(masker, "203.0.113.7"));
  ASSERT_TRUE(masker.MaskInto("198.51.100.1", out).ok());
  EXPECT_EQ(out, MustMask(masker, "198.51.100.1"));
}

// varchar(256): 12 chars of "<key-id>.v2." leave 244 base64 chars = 183 bytes = 16 (tag) + 167.
TEST(MaskerTest, LengthBoundaryForVarchar256) {
  EXPECT_EQ(Masker::MaxPlaintextBytes(256), 167u);
  EXPECT_EQ(Masker::MaskedLength(167), 256u);
  EXPECT_EQ(Masker::MaskedLength(168), 258u);
  Masker masker = MakeMasker(RingOf({kOld}));
  EXPECT_EQ(MustMask(masker, std::string(167, 'a')).size(), 256u);
  EXPECT_EQ(MustMask(masker, std::string(168, 'a')).size(), 258u);
}

TEST(MaskerTest, LengthFormulasAgreeWithEachOtherAndWithMask) {
  Masker masker = MakeMasker(RingOf({kOld}));
  for (size_t n = 1; n <= 200; ++n) {
    ASSERT_EQ(MustMask(masker, std::string(n, 'a')).size(), Masker::MaskedLength(n)) << n;
  }
  for (size_t chars = 0; chars <= 400; ++chars) {
    size_t max = Masker::MaxPlaintextBytes(chars);
    if (max == 0) {
      ASSERT_GT(Masker::MaskedLength(1), chars);
      continue;
    }
    ASSERT_LE(Masker::MaskedLength(max), chars) << chars;
    ASSERT_GT(Masker::MaskedLength(max + 1), chars) << chars;
  }
}

TEST(MaskerTest, RotatedKeyringUnmasksOldValuesAndMasksWithTheNewKey) {
  Masker before = MakeMasker(RingOf({kOld}));
  std::string old_value = MustMask(before, "203.0.113.7");

  Keyring rotated = RingOf({kOld});
  ASSERT_TRUE(rotated.Prepend(*Keyring::KeyFromMaterial(kNew)).ok());
  Masker after = MakeMasker(rotated);
  std::string new_value = MustMask(after, "203.0.113.7");
  EXPECT_THAT(new_value, StartsWith("8f7b26e3."));
  EXPECT_EQ(*after.Unmask(old_value), "203.0.113.7");
  EXPECT_EQ(*after.Unmask(new_value), "203.0.113.7");

  Result<std::string> unknown = before.Unmask(new_value);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Status::Code::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("no key with id 8f7b26e3"));
}

TEST(MaskerTest, TamperedValueFailsAuthenticationWithoutEchoingIt) {
  Masker masker = MakeMasker(RingOf({kOld}));
  std::string masked = MustMask(masker, "203.0.113.7");
  for (size_t i = 12; i < masked.size(); ++i) {  // after "<key-id>.v2."
    std::string tampered = masked;
    tampered[i] = tampered[i] == 'A' ? 'B' : 'A';
    Result<std::string> unmasked = masker.Unmask(tampered);
    ASSERT_FALSE(unmasked.ok()) << i;
    // The last character may turn into a non-canonical encoding: malformed rather than inauthentic.
    EXPECT_THAT(unmasked.status().message(), Not(HasSubstr(tampered.substr(12))));
    EXPECT_THAT(unmasked.status().message(), Not(HasSubstr("203.0.113.7")));
    if (i + 1 < masked.size()) {
      EXPECT_THAT(unmasked.status().message(), HasSubstr("authentication failed")) << i;
    }
  }
}

// The id is associated data: pointing a value at another key of the keyring fails instead of decrypting.
TEST(MaskerTest, EditedKeyIdFailsAuthentication) {
  Keyring ring = RingOf({kNew, kOld});
  Masker masker = MakeMasker(ring);
  std::string masked = MustMask(masker, "203.0.113.7");
  std::string relabeled = "60f7f036" + masked.substr(8);
  Result<std::string> unmasked = masker.Unmask(relabeled);
  ASSERT_FALSE(unmasked.ok());
  EXPECT_EQ(
      unmasked.status().message(),
      "unmask with key 60f7f036: AES-SIV: authentication failed (wrong key, wrong associated data, or the "
      "value was altered)");
}

TEST(MaskerTest, WrongKeyWithTheSameIdFailsAuthentication) {
  Masker masker = MakeMasker(RingOf({kOld}));
  std::string masked = MustMask(masker, "203.0.113.7");
  // Ids are 32 bits, so another key sharing one is possible; the tag still catches it.
  Masker other = MakeMasker(RingOf({kNew}));
  std::string forged = other.active_key_id() + masked.substr(8);
  Result<std::string> unmasked = other.Unmask(forged);
  ASSERT_FALSE(unmasked.ok());
  EXPECT_THAT(unmasked.status().message(), HasSubstr("authentication failed"));
}

TEST(MaskerTest, MalformedValuesAreNamedButNotEchoed) {
  Masker masker = MakeMasker(RingOf({kOld}));
  std::string masked = MustMask(masker, "203.0.113.7");
  const std::string cases[] = {
      "",
      "203.0.113.7",
      "60f7f036",
      "60f7f036.",
      "60f7f036" + masked.substr(9),         // no separator
      "60F7F036." + masked.substr(9),        // upper-case id
      "593-47-5928." + masked.substr(9),     // not an id at all
      "60f7f036." + masked.substr(9) + "=",  // padding is not part of the format
      "60f7f036." + masked.substr(9, 5),     // impossible base64 length / too short
      "60f7f036.AAAA",                       // 3 bytes: shorter than a tag
  };
  for (const std::string& value : cases) {
    Result<std::string> unmasked = masker.Unmask(value);
    ASSERT_FALSE(unmasked.ok()) << value;
    EXPECT_EQ(unmasked.status().code(), Status::Code::kInvalidInput) << value;
    if (value.size() > 9) {
      EXPECT_THAT(unmasked.status().message(), Not(HasSubstr(value.substr(9))));
    }
    EXPECT_THAT(unmasked.status().message(), Not(HasSubstr("593-47")));
  }
}

TEST(MaskerTest, MaskedValueRevealsNothingObvious) {
  Masker masker = MakeMasker(RingOf({kOld}));
  for (std::string_view value : {"203.0.113.7", "device-0a1b2c3d4e5f", "aaaaaaaaaaaaaaaaaaaaaaaa"}) {
    std::string masked = MustMask(masker, value);
    EXPECT_THAT(masked, Not(HasSubstr(value)));
    EXPECT_THAT(masked, Not(HasSubstr(Base64UrlEncode(value))));
    EXPECT_THAT(masked, Not(HasSubstr(Base64UrlEncode(value).substr(0, 6))));
    EXPECT_THAT(masked, Not(HasSubstr(HexEncode(value).substr(0, 8))));
  }
}

TEST(MaskerTest, RefusesAnEmptyValue) {
  Masker masker = MakeMasker(RingOf({kOld}));
  Result<std::string> masked = masker.Mask("");
  ASSERT_FALSE(masked.ok());
  EXPECT_EQ(masked.status().code(), Status::Code::kInvalidInput);
  EXPECT_THAT(masked.status().message(), HasSubstr("empty"));
}

}  // namespace
}  // namespace sqs2pg::transform
