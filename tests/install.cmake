# install: cmake --install into a temporary prefix, then build scripts/examples against it with
# find_package(shardprop) and with pkg-config, and train with both (tests/install.sh).
find_program(SP_PKG_CONFIG pkg-config)
if(SP_PKG_CONFIG)
  set(SP_CONSUMER_FLAGS "")
  if(SHARDPROP_SANITIZE OR SHARDPROP_FUZZ)
    set(SP_CONSUMER_FLAGS "-fsanitize=address,undefined")
  endif()
  add_test(NAME install
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/install.sh ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR}
            ${CMAKE_C_COMPILER} "${SP_CONSUMER_FLAGS}")
  set_tests_properties(install PROPERTIES LABELS install TIMEOUT 180
      ENVIRONMENT "${SP_TEST_ENV}")
else()
  message(STATUS "pkg-config not found: the install test is skipped")
endif()
