# cmake --install: the `shardprop` executable, the static library, the public headers, a CMake
# package (find_package(shardprop) -> shardprop::shardprop) and a pkg-config file (shardprop.pc).
include(CMakePackageConfigHelpers)

set(SP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/shardprop)

install(TARGETS shardprop_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS shardprop EXPORT shardpropTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/include/shardprop DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
    FILES_MATCHING PATTERN "*.h")
install(EXPORT shardpropTargets NAMESPACE shardprop:: DESTINATION ${SP_CMAKE_DIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/shardpropConfig.cmake.in
    ${CMAKE_BINARY_DIR}/shardpropConfig.cmake INSTALL_DESTINATION ${SP_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/shardpropConfigVersion.cmake
    VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/shardpropConfig.cmake
    ${CMAKE_BINARY_DIR}/shardpropConfigVersion.cmake DESTINATION ${SP_CMAKE_DIR})

# pkg-config. The library is static only, so everything it needs is in Libs (a plain
# `pkg-config --libs shardprop` must link), resolved here from what find_package found:
# /dir/libNAME.so -> -L/dir -lNAME (no -L for the compiler's own directories).
set(SP_PC_LIBS "")
set(SP_PC_DIRS "")
foreach(lib ${HDF5_HL_LIBRARIES} ${HDF5_C_LIBRARIES} ${MPI_C_LIBRARIES} ${ZLIB_LIBRARIES}
        ${CMAKE_THREAD_LIBS_INIT})
  if(lib MATCHES "^(.*)/lib([^/]+)\\.(so|a)(\\.[0-9.]+)?$")
    set(dir ${CMAKE_MATCH_1})
    set(name ${CMAKE_MATCH_2})
    if(NOT dir IN_LIST CMAKE_C_IMPLICIT_LINK_DIRECTORIES AND NOT dir IN_LIST SP_PC_DIRS)
      list(APPEND SP_PC_DIRS ${dir})
      string(APPEND SP_PC_LIBS " -L${dir}")
    endif()
    set(flag "-l${name}")
  else()
    set(flag "${lib}")
  endif()
  string(FIND " ${SP_PC_LIBS} " " ${flag} " seen)
  if(seen EQUAL -1)
    string(APPEND SP_PC_LIBS " ${flag}")
  endif()
endforeach()
string(REPLACE ";" " " SP_PC_OMP "${OpenMP_C_FLAGS}")
string(REPLACE ";" " " SP_PC_MPI_LINK "${MPI_C_LINK_FLAGS}")
if(NOT SP_PC_LIBS MATCHES " -lm( |$)")
  string(APPEND SP_PC_LIBS " -lm")
endif()
set(SP_PC_LIBS "${SP_PC_OMP} ${SP_PC_MPI_LINK}${SP_PC_LIBS}")
string(REGEX REPLACE "  +" " " SP_PC_LIBS "${SP_PC_LIBS}")
set(SP_PC_CFLAGS "")
if(HDF5_IS_PARALLEL)
  set(SP_PC_CFLAGS " -DSP_HDF5_PARALLEL=1")
endif()
# prefix relative to the .pc file, so `cmake --install --prefix DIR` anywhere works.
file(RELATIVE_PATH SP_PC_UP /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
string(REGEX REPLACE "/$" "" SP_PC_UP "${SP_PC_UP}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/shardprop.pc.in ${CMAKE_BINARY_DIR}/shardprop.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/shardprop.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
