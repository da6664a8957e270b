// Per-field modes, the siv v2 format (field-bound, length-hidden) beside v1, and one-way hmac.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "common/encoding.h"
#include "transform/masker.h"
#include "transform/test_keys.h"

namespace sqs2pg::transform {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using testing::Material;
using ::testing::Not;
using ::testing::StartsWith;

// The Crypto-PAn reference key of tests/vectors/cryptopan.tsv.
const std::string kCryptoPanHex = "1522178d33a4cf80130a5b1649907d10d8988f837979652762574c2d2a842202";
const std::string kSivLine =
    "sqs2pg-key-v1 " + Keyring::KeyIdFor(Material(0)) + " " + HexEncode(Material(0)) + "\n";  // id 60f7f036

// The line keygen writes for a new key of `mode` (a cryptopan key: v3, the families apart).
std::string V2Line(MaskMode mode, const std::string& material) {
  return (mode == MaskMode::kCryptoPan ? "sqs2pg-key-v3 " : "sqs2pg-key-v2 ") +
         Keyring::KeyIdFor(material, mode) + " " + std::string(ModeName(mode)) + " " + HexEncode(material) +
         "\n";
}

Keyring Ring(const std::string& text) {
  auto ring = Keyring::Parse(text);
  EXPECT_TRUE(ring.ok()) << ring.status().message();
  return std::move(ring).value();
}

Masker MakeMasker(const Keyring& ring, MaskerOptions options = {}) {
  auto masker = Masker::Create(ring, options);
  EXPECT_TRUE(masker.ok()) << masker.status().message();
  return std::move(masker).value();
}

std::string MustMask(Masker& m, MaskField field, std::string_view value) {
  auto masked = m.MaskValue(field, value);
  EXPECT_TRUE(masked.ok()) << masked.status().message();
  return masked.ok() ? *masked : std::string();
}

// A bare address is unmasked with the ip field's key, named as a row's masked_ip_key_id names it:
// with several address-valued keys in the keyring, unmask refuses to pick one (issue 17 item 12).
std::string MustUnmask(Masker& m, std::string_view masked) {
  auto plain = m.Unmask(masked, ParseIp(masked) ? m.key_id(MaskField::kIp) : std::string());
  EXPECT_TRUE(plain.ok()) << plain.status().message();
  return plain.ok() ? *plain : std::string();
}

// A keyring with a key of every mode; `ip_mode` masks ip.
Keyring AllModes(MaskMode ip_mode) {
  std::string text = kSivLine;
  const std::string crypto_pan = *HexDecode(kCryptoPanHex);
  std::string ip_id;
  for (MaskMode mode :
       {MaskMode::kCryptoPan, MaskMode::kIpcryptPfx, MaskMode::kIpcryptDeterministic, MaskMode::kHmac}) {
    std::string material =
        mode == MaskMode::kCryptoPan
            ? crypto_pan
            : Material(static_cast<unsigned char>(0x40 + 7 * int(mode))).substr(0, KeyBytesFor(mode));
    text += V2Line(mode, material);
    if (mode == ip_mode) ip_id = Keyring::KeyIdFor(material, mode);
  }
  if (!ip_id.empty()) text += "sqs2pg-field ip " + ip_id + "\n";
  return Ring(text);
}

// Issue 18: a mapped column with an sqs2pg-column line masks with that line's key; a mapping
// asking another mode for it is refused with the keygen that fixes it; other columns keep the
// newest key of their mode.
TEST(MaskerModesTest, AColumnLinePicksTheColumnsKey) {
  const std::string column_siv = Material(0x40), hmac = std::string(32, '\x07');
  const std::string column_id = Keyring::KeyIdFor(column_siv);
  Keyring ring = Ring(kSivLine + V2Line(MaskMode::kHmac, hmac) + "sqs2pg-key-v1 " + column_id + " " +
                      HexEncode(column_siv) + "\nsqs2pg-column email " + column_id + "\n");
  Masker m = MakeMasker(ring);
  auto key = m.KeyForColumn("email", MaskMode::kSiv);
  ASSERT_TRUE(key.ok()) << key.status().message();
  EXPECT_EQ(key->id(), column_id);
  std::string masked;
  ASSERT_TRUE(m.MaskColumnInto(*key, "email", "ada@example.com", masked).ok());
  EXPECT_THAT(masked, StartsWith(column_id + "."));
  auto plain = m.UnmaskColumn(masked, "email");
  ASSERT_TRUE(plain.ok()) << plain.status().message();
  EXPECT_EQ(*plain, "ada@example.com");
  // Without a mode (mask = "keyring") the line decides too.
  EXPECT_EQ(m.KeyForColumn("email", std::nullopt)->id(), column_id);
  auto wrong = m.KeyForColumn("email", MaskMode::kHmac);
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.status().message(), HasSubstr("keygen --rotate --column email --mode hmac"));
  // A column without a line: the active siv key, not the column's.
  EXPECT_EQ(m.KeyForColumn("other", MaskMode::kSiv)->id(), Keyring::KeyIdFor(Material(0)));
}

TEST(MaskerModesTest, PinnedV1ValuesStillUnmask) {
  // Written by sqs2pg before format v2 (same key, Material(0)): they must keep unmasking.
  Masker m = MakeMasker(Ring(kSivLine));
  EXPECT_EQ(MustUnmask(m, "60f7f036.hejgoAY_Bj2H7n7h-xlWATBO8BowujkxVmgP"), "593-47-5928");
  EXPECT_EQ(MustUnmask(m, "60f7f036.6rNBoWUp9lRIWSUUYYQSCgeTaZ9VLeXlprZAlw"), "198.51.100.7");
}

TEST(MaskerModesTest, NewValuesAreV2AndCoexistWithV1) {
  Masker m = MakeMasker(Ring(kSivLine));
  std::string ip = MustMask(m, MaskField::kIp, "198.51.100.7");
  std::string device = MustMask(m, MaskField::kDeviceId, "593-47-5928");
  EXPECT_THAT(ip, StartsWith("60f7f036.v2."));
  EXPECT_THAT(device, StartsWith("60f7f036.v2."));
  EXPECT_EQ(MustUnmask(m, ip), "198.51.100.7");
  EXPECT_EQ(MustUnmask(m, device), "593-47-5928");
  // The v1 value of the same address is another string: a migration sees both until rekey.
  EXPECT_NE(ip, "60f7f036.6rNBoWUp9lRIWSUUYYQSCgeTaZ9VLeXlprZAlw");
}

TEST(MaskerModesTest, SivV2BindsTheFieldName) {
  Masker m = MakeMasker(Ring(kSivLine));
  // Equal text in two fields, and in a reject body, gives three different values.
  std::string as_device = MustMask(m, MaskField::kDeviceId, "198.51.100.7");
  std::string as_ip = MustMask(m, MaskField::kIp, "198.51.100.7");
  std::string as_body = *m.Mask("198.51.100.7");
  EXPECT_NE(as_device, as_ip);
  EXPECT_NE(as_device, as_body);
  EXPECT_NE(as_ip, as_body);
  EXPECT_EQ(MustUnmask(m, as_device), "198.51.100.7");
  EXPECT_EQ(MustUnmask(m, as_body), "198.51.100.7");
}

TEST(MaskerModesTest, SivV2HidesTheLengthOfTheAddressText) {
  Masker m = MakeMasker(Ring(kSivLine));
  const size_t v4 = MustMask(m, MaskField::kIp, "1.1.1.1").size();
  EXPECT_EQ(MustMask(m, MaskField::kIp, "255.255.255.255").size(), v4);
  EXPECT_EQ(v4, Masker::MaskedLength(4));
  const size_t v6 = MustMask(m, MaskField::kIp, "::1").size();
  EXPECT_EQ(MustMask(m, MaskField::kIp, "2001:db8:1234:5678:9abc:def0:1234:5678").size(), v6);
  EXPECT_EQ(v6, Masker::MaskedLength(16));
  // Any spelling of one address is one value.
  EXPECT_EQ(MustMask(m, MaskField::kIp, "::ffff:1.1.1.1"), MustMask(m, MaskField::kIp, "1.1.1.1"));
  EXPECT_EQ(MustMask(m, MaskField::kIp, "2001:DB8:0::1"), MustMask(m, MaskField::kIp, "2001:db8::1"));
}

TEST(MaskerModesTest, CryptoPanFieldMasksLikeTheReferenceAndUnmasksFromTheFieldLine) {
  Masker m = MakeMasker(AllModes(MaskMode::kCryptoPan));
  EXPECT_EQ(m.mode(MaskField::kIp), MaskMode::kCryptoPan);
  EXPECT_EQ(m.mode(MaskField::kDeviceId), MaskMode::kSiv);
  EXPECT_EQ(MustMask(m, MaskField::kIp, "24.5.0.80"), "100.9.15.210");
  EXPECT_EQ(MustUnmask(m, "100.9.15.210"), "24.5.0.80");
  auto network = m.MaskNetwork(*ParseIp("24.5.0.99"), 24);
  ASSERT_TRUE(network.ok());
  EXPECT_EQ(*network, "100.9.15.0/24");
}

// Issue 17 item 11: Crypto-PAn keeps IPv4 and IPv6 apart. With one tree for both (keys from
// before, v2 lines), 2001:: and 32.1.0.0 share their first 16 bits, so their masked forms do too:
// a masked IPv6 /16 told the real /16 of masked IPv4 addresses. A new key (v3) masks IPv6 through
// a key and pad of its own, IPv4 still exactly as the reference; old values still unmask.
TEST(MaskerModesTest, CryptoPanKeepsTheFamiliesApartAndOldKeysStillUnmask) {
  const std::string material = *HexDecode(kCryptoPanHex);
  const std::string old_id = Keyring::KeyIdFor(material, MaskMode::kCryptoPan, /*shared_ipv6_tree=*/true);
  const std::string new_id = Keyring::KeyIdFor(material, MaskMode::kCryptoPan);
  ASSERT_NE(old_id, new_id);
  Masker old_scheme = MakeMasker(Ring(kSivLine + "sqs2pg-key-v2 " + old_id + " cryptopan " +
                                      HexEncode(material) + "\nsqs2pg-field ip " + old_id + "\n"));
  Masker apart = MakeMasker(
      Ring(kSivLine + V2Line(MaskMode::kCryptoPan, material) + "sqs2pg-field ip " + new_id + "\n"));
  auto top16 = [](const std::string& address) {
    IpAddress ip = *ParseIp(address);
    return (ip.bytes[ip.v4 ? 12 : 0] << 8) | ip.bytes[ip.v4 ? 13 : 1];
  };
  // One tree: the leak.
  EXPECT_EQ(top16(MustMask(old_scheme, MaskField::kIp, "2001:db8::1")),
            top16(MustMask(old_scheme, MaskField::kIp, "32.1.2.3")));
  // Apart: IPv4 is the reference's, IPv6 no longer follows it.
  EXPECT_EQ(MustMask(apart, MaskField::kIp, "24.5.0.80"), "100.9.15.210");
  EXPECT_EQ(MustMask(apart, MaskField::kIp, "32.1.2.3"), MustMask(old_scheme, MaskField::kIp, "32.1.2.3"));
  int same = 0;
  for (const char* v6 :
       {"2001:db8::1", "2001:4860::8888", "2a00:1450::1", "2a03:2880::1", "2606:4700::1111"}) {
    const std::string masked = MustMask(apart, MaskField::kIp, v6);
    EXPECT_NE(masked, MustMask(old_scheme, MaskField::kIp, v6));
    EXPECT_EQ(MustUnmask(apart, masked), v6);  // still prefix-preserving and reversible
    same += top16(masked) == top16(MustMask(apart, MaskField::kIp, "32.1.2.3"));
  }
  EXPECT_LT(same, 5);
  // Prefixes are still kept within IPv6.
  auto network = apart.MaskNetwork(*ParseIp("2001:db8::1"), 32);
  ASSERT_TRUE(network.ok());
  EXPECT_EQ(*apart.MaskNetwork(*ParseIp("2001:db8:ffff::9"), 32), *network);
  // A value stored under the old key still unmasks with it (a rekey moves it to a new key).
  const std::string stored = MustMask(old_scheme, MaskField::kIp, "2001:db8::1");
  EXPECT_EQ(MustUnmask(old_scheme, stored), "2001:db8::1");
  // The keyring writes each kind back as it read it.
  Keyring both = Ring(kSivLine + "sqs2pg-key-v2 " + old_id + " cryptopan " + HexEncode(material) + "\n" +
                      V2Line(MaskMode::kCryptoPan, material));
  std::string text = both.Serialize();
  EXPECT_THAT(text, HasSubstr("sqs2pg-key-v2 " + old_id + " cryptopan "));
  EXPECT_THAT(text, HasSubstr("sqs2pg-key-v3 " + new_id + " cryptopan "));
  EXPECT_TRUE(Keyring::Parse(text).ok());
}

TEST(MaskerModesTest, EveryModeRoundTripsBothFamilies) {
  std::mt19937_64 rng(7);
  for (MaskMode mode :
       {MaskMode::kSiv, MaskMode::kCryptoPan, MaskMode::kIpcryptPfx, MaskMode::kIpcryptDeterministic}) {
    Masker m = MakeMasker(AllModes(mode));
    ASSERT_EQ(m.mode(MaskField::kIp), mode);
    for (int i = 0; i < 200; ++i) {
      IpAddress ip;
      for (auto& b : ip.bytes) b = static_cast<std::uint8_t>(rng());
      if (i % 2 == 0) ip = *IpFromBinary(std::string_view(reinterpret_cast<char*>(ip.bytes.data()), 4));
      std::string masked;
      ASSERT_TRUE(m.MaskIpInto(ip, masked).ok());
      if (AddressValued(mode)) {
        ASSERT_TRUE(ParseIp(masked)) << masked;
      }
      ASSERT_EQ(MustUnmask(m, masked), FormatIp(ip)) << ModeName(mode);
    }
  }
}

TEST(MaskerModesTest, IpcryptDeterministicHidesTheFamily) {
  Masker m = MakeMasker(AllModes(MaskMode::kIpcryptDeterministic));
  std::string masked = MustMask(m, MaskField::kIp, "192.0.2.1");
  ASSERT_TRUE(ParseIp(masked));
  EXPECT_FALSE(ParseIp(masked)->v4);
  EXPECT_EQ(MustUnmask(m, masked), "192.0.2.1");
  EXPECT_FALSE(m.MaskNetwork(*ParseIp("192.0.2.1"), 24).ok());  // not prefix-preserving
}

TEST(MaskerModesTest, HmacIsDeterministicFieldBoundAndSaysItCannotBeUndone) {
  Keyring ring = AllModes(MaskMode::kHmac);
  ASSERT_TRUE(ring.AssignField(MaskField::kDeviceId, ring.ActiveFor(MaskField::kIp).id, false).ok());
  Masker m = MakeMasker(ring, {MaskMode::kHmac, MaskMode::kHmac});
  std::string ip = MustMask(m, MaskField::kIp, "198.51.100.7");
  std::string device = MustMask(m, MaskField::kDeviceId, "198.51.100.7");
  EXPECT_THAT(ip, MatchesRegex("[0-9a-f]{8}\\.hmac\\.[A-Za-z0-9_-]{43}"));
  EXPECT_EQ(MustMask(m, MaskField::kIp, "::ffff:198.51.100.7"), ip);
  EXPECT_NE(ip, device);
  EXPECT_EQ(m.MaxFieldBytes(MaskField::kDeviceId, 256), SIZE_MAX);
  EXPECT_EQ(m.MaxFieldBytes(MaskField::kDeviceId, 40), 0u);
  auto undone = m.Unmask(device);
  ASSERT_FALSE(undone.ok());
  EXPECT_THAT(undone.status().message(), HasSubstr("one-way"));
  EXPECT_THAT(undone.status().message(), HasSubstr("cannot be decrypted"));
}

TEST(MaskerModesTest, ChoosingAModeTheKeyringLacksSaysHowToAddOne) {
  auto m = Masker::Create(Ring(kSivLine), {MaskMode::kCryptoPan, std::nullopt});
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("keygen --rotate --ip-mask cryptopan"));
  auto device = Masker::Create(AllModes(MaskMode::kSiv), {std::nullopt, MaskMode::kCryptoPan});
  EXPECT_FALSE(device.ok());
}

TEST(KeyringModesTest, FieldLinesRoundTripAndRecordHistory) {
  Keyring ring = AllModes(MaskMode::kCryptoPan);
  EXPECT_EQ(ring.ActiveFor(MaskField::kIp).mode, MaskMode::kCryptoPan);
  EXPECT_EQ(ring.ActiveFor(MaskField::kDeviceId).mode, MaskMode::kSiv);
  Key pfx = *Keyring::KeyFromMaterial(Material(0x90).substr(0, 32), MaskMode::kIpcryptPfx);
  ASSERT_TRUE(ring.Prepend(pfx).ok());
  ASSERT_TRUE(ring.AssignField(MaskField::kIp, pfx.id).ok());
  Keyring again = Ring(ring.Serialize());
  auto ip_keys = again.FieldKeys(MaskField::kIp);
  ASSERT_EQ(ip_keys.size(), 2u);
  EXPECT_EQ(ip_keys[0]->id, pfx.id);
  EXPECT_EQ(ip_keys[1]->mode, MaskMode::kCryptoPan);
  EXPECT_THAT(ring.Serialize(), HasSubstr("sqs2pg-field ip " + pfx.id + " "));
  // An siv-only keyring is still written in the v1 form alone.
  EXPECT_THAT(Ring(kSivLine).Serialize(), Not(HasSubstr("sqs2pg-field")));
  EXPECT_THAT(Ring(kSivLine).Serialize(), Not(HasSubstr("sqs2pg-key-v2 ")));
}

TEST(KeyringModesTest, RefusesBadFieldLinesAndKeyringsWithoutSiv) {
  const std::string hmac = V2Line(MaskMode::kHmac, Material(1).substr(0, 32));
  EXPECT_THAT(Keyring::Parse(hmac).status().message(), HasSubstr("no siv key"));
  EXPECT_THAT(Keyring::Parse(kSivLine + "sqs2pg-field ip 01234567\n").status().message(),
              HasSubstr("no key with id 01234567"));
  const std::string pfx_material = Material(2).substr(0, 32);
  EXPECT_THAT(
      Keyring::Parse(kSivLine + V2Line(MaskMode::kIpcryptPfx, pfx_material) + "sqs2pg-field device_id " +
                     Keyring::KeyIdFor(pfx_material, MaskMode::kIpcryptPfx) + "\n")
          .status()
          .message(),
      HasSubstr("device_id cannot use"));
  EXPECT_THAT(Keyring::Parse(kSivLine + "sqs2pg-key-v2 01234567 rot13 00\n").status().message(),
              HasSubstr("unknown mode"));
  // The id of a non-siv key depends on its mode: a line claiming another mode is refused as damaged.
  std::string line = V2Line(MaskMode::kHmac, pfx_material);
  line.replace(line.find("hmac"), 4, "ipcrypt-pfx");
  EXPECT_THAT(Keyring::Parse(kSivLine + line).status().message(), HasSubstr("does not match"));
  // A v3 line is for a cryptopan key only, and a cryptopan key's v2 and v3 ids differ.
  line = V2Line(MaskMode::kCryptoPan, pfx_material);
  line.replace(line.find("cryptopan"), 9, "ipcrypt-pfx");
  EXPECT_THAT(Keyring::Parse(kSivLine + line).status().message(), HasSubstr("is for a cryptopan key"));
  line = V2Line(MaskMode::kCryptoPan, pfx_material);
  line.replace(0, 13, "sqs2pg-key-v2");
  EXPECT_THAT(Keyring::Parse(kSivLine + line).status().message(), HasSubstr("does not match"));
}

TEST(MaskerModesTest, ABareAddressUnmasksWithTheKeyItsRowNames) {
  // Two Crypto-PAn keys after a rotation: the field line names the new one first.
  const std::string old_material = *HexDecode(kCryptoPanHex);
  const std::string new_material = Material(0x77).substr(0, 32);
  const std::string old_id = Keyring::KeyIdFor(old_material, MaskMode::kCryptoPan);
  const std::string new_id = Keyring::KeyIdFor(new_material, MaskMode::kCryptoPan);
  Keyring ring =
      Ring(kSivLine + V2Line(MaskMode::kCryptoPan, old_material) +
           V2Line(MaskMode::kCryptoPan, new_material) + "sqs2pg-field ip " + new_id + " " + old_id + "\n");
  Masker m = MakeMasker(ring);
  EXPECT_EQ(m.key_id(MaskField::kIp), new_id);
  EXPECT_EQ(m.address_key_ids(), (std::vector<std::string>{new_id, old_id}));
  // The reference trace's first pair, made by the old key.
  auto with_old = m.Unmask("100.9.15.210", old_id);
  ASSERT_TRUE(with_old.ok()) << with_old.status().message();
  EXPECT_EQ(*with_old, "24.5.0.80");
  // Without a key id, two address-valued keys could have made it: unmask refuses to guess (before
  // issue 17 item 12 it used the field line's first key: here the wrong one, silently) and names
  // the option that resolves it.
  auto guessed = m.Unmask("100.9.15.210");
  ASSERT_FALSE(guessed.ok());
  EXPECT_THAT(guessed.status().message(), HasSubstr("--address-key-id"));
  EXPECT_THAT(guessed.status().message(), Not(HasSubstr("100.9.15.210")));
  // A siv key cannot unmask an address; an unknown id is named, never the value.
  auto siv = m.Unmask("100.9.15.210", "60f7f036");
  ASSERT_FALSE(siv.ok());
  EXPECT_THAT(siv.status().message(), HasSubstr("siv key"));
  EXPECT_THAT(siv.status().message(), Not(HasSubstr("100.9.15.210")));
  auto unknown = m.Unmask("100.9.15.210", "0badc0de");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), HasSubstr("not in the keyring"));
  // A value with a key id in front keeps using its own key, whatever is named.
  const std::string masked_device = MustMask(m, MaskField::kDeviceId, "593-47-5928");
  auto device = m.Unmask(masked_device, old_id);
  ASSERT_TRUE(device.ok());
  EXPECT_EQ(*device, "593-47-5928");
}

}  // namespace
}  // namespace sqs2pg::transform
