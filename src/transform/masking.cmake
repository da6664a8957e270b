# Keyed PII masking: AES-SIV, the keyring and the masker. Included by src/transform/CMakeLists.txt.
add_library(sqs2pg_masking STATIC
  ${CMAKE_CURRENT_LIST_DIR}/aes_siv.cc
  ${CMAKE_CURRENT_LIST_DIR}/aes_ecb.cc
  ${CMAKE_CURRENT_LIST_DIR}/ip_address.cc
  ${CMAKE_CURRENT_LIST_DIR}/ip_ciphers.cc
  ${CMAKE_CURRENT_LIST_DIR}/keyed_hmac.cc
  ${CMAKE_CURRENT_LIST_DIR}/keyring.cc
  ${CMAKE_CURRENT_LIST_DIR}/masker.cc)
target_include_directories(sqs2pg_masking PUBLIC ${SQS2PG_SRC})
target_link_libraries(sqs2pg_masking PUBLIC sqs2pg_common OpenSSL::Crypto PRIVATE fmt::fmt)

sqs2pg_unit_test(NAME masking_test
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/aes_siv_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/ip_ciphers_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/keyed_hmac_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/keyring_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/masker_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/masker_modes_test.cc
  LIBS sqs2pg_masking)
