# osseg_add_test(NAME SOURCES... [LIBS ...] [ISA_LEVELS])
#
# Builds a cmocka test program and registers it with CTest. With ISA_LEVELS
# the program is registered once per CPU feature level, so the SIMD paths and
# the generic references are all exercised on one machine:
#   NAME            every feature the CPU has
#   NAME.noavx512   OSSEG_DISABLE_CPU_FEATURES=avx512
#   NAME.generic    OSSEG_DISABLE_CPU_FEATURES=avx512,avx2
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)

function(osseg_add_test name)
  cmake_parse_arguments(T "ISA_LEVELS" "TIMEOUT" "SOURCES;LIBS;ARGS;LABELS" ${ARGN})
  # test_cpu_env.c applies OSSEG_DISABLE_CPU_FEATURES before main (a source
  # of every test, not a library member, so that its constructor is linked)
  add_executable(${name} ${T_SOURCES} ${PROJECT_SOURCE_DIR}/tests/support/test_cpu_env.c)
  target_link_libraries(${name} PRIVATE osseg_test_support PkgConfig::CMOCKA ${T_LIBS})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  if(T_ISA_LEVELS)
    set(levels "all;noavx512;generic")
  else()
    set(levels "all")
  endif()
  foreach(level ${levels})
    if(level STREQUAL "all")
      set(tname ${name})
      set(disable "")
    elseif(level STREQUAL "noavx512")
      set(tname ${name}.noavx512)
      set(disable "avx512")
    else()
      set(tname ${name}.generic)
      set(disable "avx512,avx2")
    endif()
    add_test(NAME ${tname} COMMAND ${name} ${T_ARGS})
    set_tests_properties(${tname} PROPERTIES
      TIMEOUT ${T_TIMEOUT}
      LABELS "${T_LABELS}"
      ENVIRONMENT "OSSEG_DISABLE_CPU_FEATURES=${disable};OSSEG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OSSEG_BINARY_DIR=${PROJECT_BINARY_DIR}")
  endforeach()
endfunction()
