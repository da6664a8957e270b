# make install (CMake install rules) and make deb (CPack's DEB generator).
include(GNUInstallDirs)
# For the install(CODE) below, which runs in cmake_install.cmake where only these are known.
install(CODE "set(SQS2PG_SOURCE_DIR [[${CMAKE_SOURCE_DIR}]])\nset(SQS2PG_BINARY_DIR [[${CMAKE_BINARY_DIR}]])")

install(TARGETS sqs2pg RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES deploy/sqs2pg.toml DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
# The unit names the binary by path: written at install time for the prefix being installed to
# (/usr for the .deb, /usr/local for a plain make install). systemd reads units from both
# /usr/lib/systemd/system and /usr/local/lib/systemd/system.
install(CODE [[
  foreach(name sqs2pg.service sqs2pg-maintain.service)
    file(READ "${SQS2PG_SOURCE_DIR}/deploy/systemd/${name}" unit)
    string(REPLACE "/usr/bin/sqs2pg" "${CMAKE_INSTALL_PREFIX}/bin/sqs2pg" unit "${unit}")
    file(WRITE "${SQS2PG_BINARY_DIR}/${name}" "${unit}")
  endforeach()
]])
install(FILES ${CMAKE_BINARY_DIR}/sqs2pg.service ${CMAKE_BINARY_DIR}/sqs2pg-maintain.service
              deploy/systemd/sqs2pg-maintain.timer
        DESTINATION lib/systemd/system)

# The man page, made from --help by help2man (Debian: help2man, scripts/install-deps); without it
# the --help text is installed as the documentation instead, so the install still documents flags.
find_program(HELP2MAN help2man)
if(HELP2MAN)
  add_custom_command(
    OUTPUT ${CMAKE_BINARY_DIR}/sqs2pg.1.gz
    COMMAND ${HELP2MAN} --no-info --no-discard-stderr --name "${PROJECT_DESCRIPTION}"
            --version-string "${PROJECT_VERSION}" --output ${CMAKE_BINARY_DIR}/sqs2pg.1 $<TARGET_FILE:sqs2pg>
    COMMAND gzip -9nf ${CMAKE_BINARY_DIR}/sqs2pg.1
    DEPENDS sqs2pg
    COMMENT "help2man: sqs2pg.1")
  add_custom_target(sqs2pg_man ALL DEPENDS ${CMAKE_BINARY_DIR}/sqs2pg.1.gz)
  install(FILES ${CMAKE_BINARY_DIR}/sqs2pg.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  add_custom_command(
    OUTPUT ${CMAKE_BINARY_DIR}/sqs2pg-help.txt
    COMMAND $<TARGET_FILE:sqs2pg> --help > ${CMAKE_BINARY_DIR}/sqs2pg-help.txt
    DEPENDS sqs2pg)
  add_custom_target(sqs2pg_help ALL DEPENDS ${CMAKE_BINARY_DIR}/sqs2pg-help.txt)
  install(FILES ${CMAKE_BINARY_DIR}/sqs2pg-help.txt DESTINATION ${CMAKE_INSTALL_DOCDIR})
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME sqs2pg)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "sqs2pg maintainers <sqs2pg@example.com>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # sqs2pg_0.1.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION database)
# Depends: from dpkg-shlibdeps on the installed binary, never a hand-written list.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS ca-certificates)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR})
include(CPack)
