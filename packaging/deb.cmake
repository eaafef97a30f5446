# The Debian package of kvfs (packaging/build-deb.sh): install rules for
# what the package ships, and CPack's DEB generator over them. cpack packs
# the binary this build tree already made, so the package costs seconds in
# CI instead of a second build (see the README, "Debian package").
#
# Layout (Debian 12): /usr/bin/kvfs, /usr/share/man/man1/kvfs.1.gz,
# /usr/share/doc/kvfs/{copyright,changelog.Debian.gz}, /etc/kvfs/kvfs.toml,
# /etc/logrotate.d/kvfs, /lib/systemd/system/kvfs@.service, /var/log/kvfs/.
# The files under /etc and /lib have absolute destinations: a
# `cmake --install` of this tree also puts them there.
include(GNUInstallDirs)

set(KVFS_PKG_DIR ${CMAKE_SOURCE_DIR}/packaging)

# Debian compresses man pages and changelogs with gzip -9n (no timestamp,
# so that the package is reproducible).
foreach(pair "kvfs.1:kvfs.1.gz" "debian/changelog:changelog.Debian.gz")
  string(REPLACE ":" ";" pair "${pair}")
  list(GET pair 0 src)
  list(GET pair 1 out)
  add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/package/${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/package
    COMMAND sh -c "gzip -9n -c '${KVFS_PKG_DIR}/${src}' > '${CMAKE_BINARY_DIR}/package/${out}'"
    DEPENDS ${KVFS_PKG_DIR}/${src}
    VERBATIM)
  list(APPEND KVFS_PACKAGE_FILES ${CMAKE_BINARY_DIR}/package/${out})
endforeach()
add_custom_target(kvfs_package_files ALL DEPENDS ${KVFS_PACKAGE_FILES})

install(TARGETS kvfs RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_BINARY_DIR}/package/kvfs.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${CMAKE_BINARY_DIR}/package/changelog.Debian.gz ${KVFS_PKG_DIR}/debian/copyright
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/kvfs)
install(FILES ${KVFS_PKG_DIR}/kvfs.toml DESTINATION /etc/kvfs)
install(FILES ${KVFS_PKG_DIR}/kvfs.logrotate DESTINATION /etc/logrotate.d RENAME kvfs)
install(FILES ${KVFS_PKG_DIR}/kvfs@.service DESTINATION /lib/systemd/system)
install(DIRECTORY DESTINATION /var/log/kvfs)

set(KVFS_DEB_MAINTAINER "kvfs maintainers <root@localhost>" CACHE STRING "Maintainer field of the Debian package")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME kvfs)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "KV-cache offload tier of an LLM inference host, as a FUSE filesystem")
set(CPACK_PACKAGE_DESCRIPTION
  "kvfs serves the KV cache of an LLM inference engine as files on one or\n"
  "more local NVMe drives, or on a directory of a distributed filesystem\n"
  "shared between hosts. A file becomes visible, whole and atomically, when\n"
  "its writer closes it, and the least valuable files are evicted when the\n"
  "mount is full. Each mount runs as kvfs@NAME.service from\n"
  "/etc/kvfs/NAME.toml.")
string(REPLACE ";" "" CPACK_PACKAGE_DESCRIPTION "${CPACK_PACKAGE_DESCRIPTION}")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${KVFS_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)   # kvfs_VERSION-RELEASE_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The libraries come from dpkg-shlibdeps (libfuse3-3, liburing2, libspdlog,
# libfmt, libxxhash0, libstdc++6, libc6: Debian's ${shlibs:Depends});
# fuse3 brings fusermount3 and mount.fuse3 (fstab lines).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "fuse3")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "logrotate")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${KVFS_PKG_DIR}/debian/conffiles
  ${KVFS_PKG_DIR}/debian/postinst
  ${KVFS_PKG_DIR}/debian/prerm
  ${KVFS_PKG_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# `cpack` packs what is built; packaging/build-deb.sh builds the targets it
# needs first (without this, cpack and `cmake --install` would build every
# test and benchmark).
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)
include(CPack)
