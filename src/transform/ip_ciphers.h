#pragma once
// Address-valued IP masks: the masked value is itself an IP address, so it fits an `inet` column.
//
//   CryptoPan             Xu, Fan, Ammar, Moon (2002), prefix-preserving. 32-byte key: an AES-128 key,
//                         then 16 bytes whose encryption is the padding block. IPv4 stays IPv4 and is
//                         bit for bit the reference implementation (tests/vectors/cryptopan.tsv). IPv6
//                         uses the natural 128-bit extension (the address fills the whole block, as
//                         yacryptopan does); no published IPv6 vectors exist for it.
//   CryptoPan, families apart (MakeCryptoPanFamiliesApart, every key made since issue 17 item 11):
//                         IPv4 exactly as above (the reference vectors hold); IPv6 through a Crypto-PAn
//                         of its own, whose AES key and pad come from HMAC-SHA256(key, "sqs2pg cryptopan
//                         ipv6"). With one tree for both (MakeCryptoPan), a masked IPv6 /16 (2001:, 2a0x:)
//                         told the real /16 of masked IPv4 addresses in 32.1/16, 42.x, 38.x, and all
//                         global IPv6 shared its masked top 3 bits with real 32.0.0.0/3.
//   IpcryptDeterministic  draft-denis-ipcrypt "ipcrypt-deterministic": AES-128 of the 16-byte
//                         (IPv4-mapped) form. 16-byte key. An IPv4 address comes out as IPv6 (unless
//                         the ciphertext happens to be IPv4-mapped), so the family is hidden.
//   IpcryptPfx            draft-denis-ipcrypt "ipcrypt-pfx", prefix-preserving: bit i is flipped by the
//                         low bit of AES(K1, p) xor AES(K2, p), p = zeros || 1 || the first i bits.
//                         32-byte key K1 || K2 (the halves must differ). IPv4 stays IPv4.
//
// Prefix-preserving: two addresses that share exactly their first k bits mask to addresses that
// share exactly their first k bits. Encryption needs one AES block per address bit (two for pfx).
// The first 16 bits' flips come from a table built when the key is loaded (2^16 - 1 evaluations,
// about 1 ms, 128 KiB per table, wiped when freed); every other block depends only on the
// plaintext's own prefixes, so they are built first and go through OpenSSL in one ECB call.
// Decryption must go bit by bit past the table (each block needs the bits recovered so far);
// unmasking is rare.
//
// Not thread-safe: each object reuses its keyed OpenSSL contexts. One per thread.

#include <memory>
#include <string_view>

#include "common/result.h"
#include "transform/ip_address.h"

namespace sqs2pg::transform {

class IpCipher {
 public:
  virtual ~IpCipher() = default;
  virtual Result<IpAddress> Encrypt(const IpAddress& ip) = 0;
  virtual Result<IpAddress> Decrypt(const IpAddress& masked) = 0;
  // True if equal k-bit prefixes map to equal k-bit prefixes (and unequal to unequal).
  virtual bool PrefixPreserving() const = 0;
};

// Key sizes: CryptoPan 32, IpcryptDeterministic 16, IpcryptPfx 32 (halves must differ).
Result<std::unique_ptr<IpCipher>> MakeCryptoPan(std::string_view key);
Result<std::unique_ptr<IpCipher>> MakeCryptoPanFamiliesApart(std::string_view key);
Result<std::unique_ptr<IpCipher>> MakeIpcryptDeterministic(std::string_view key);
Result<std::unique_ptr<IpCipher>> MakeIpcryptPfx(std::string_view key);

// The first `bits` bits of `ip` kept, the rest zero (bits is clamped to the address's size).
IpAddress NetworkOf(const IpAddress& ip, int bits);

}  // namespace sqs2pg::transform
