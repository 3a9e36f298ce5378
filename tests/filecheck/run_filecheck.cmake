# Runs `sigjit compile ARGS --out OUT_DIR`, then FileCheck CHECK_FILE against the emitted PTX once
# per prefix in PREFIXES. Invoked by the tests of FileCheckTests.cmake as
#   cmake -DCLI=... -DFILECHECK=... -DCHECK_FILE=... -DOUT_DIR=... -DARGS=a|b|c -DPREFIXES=P|Q -P run_filecheck.cmake
# Lists are passed with "|" separators. A prefix P checks the whole file with its P-NOT lines,
# so "ABSENT-NOT: x" means "x occurs nowhere", which a CHECK-NOT after other CHECKs cannot say.
if(NOT FILECHECK OR NOT EXISTS "${FILECHECK}")
  message(FATAL_ERROR "LLVM FileCheck was not found when cmake ran (looked for FileCheck and FileCheck-14 on PATH and in "
                      "/usr/lib/llvm-14/bin). Install it (apt-get install llvm-14-tools) and re-run cmake; the PTX checks "
                      "cannot run without it.")
endif()
foreach(var CLI CHECK_FILE OUT_DIR)
  if(NOT ${var})
    message(FATAL_ERROR "run_filecheck.cmake: ${var} is not set")
  endif()
endforeach()
string(REPLACE "|" ";" ARGS "${ARGS}")
string(REPLACE "|" ";" PREFIXES "${PREFIXES}")
if(NOT PREFIXES)
  set(PREFIXES CHECK)
endif()

file(REMOVE_RECURSE "${OUT_DIR}")
execute_process(COMMAND "${CLI}" compile ${ARGS} --out "${OUT_DIR}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
list(JOIN ARGS " " args_text)
message("sigjit compile ${args_text} --out ${OUT_DIR}\n${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "sigjit compile ${args_text} failed with exit status ${rc}")
endif()
file(GLOB ptx "${OUT_DIR}/*.ptx")
list(LENGTH ptx count)
if(NOT count EQUAL 1)
  message(FATAL_ERROR "expected exactly one .ptx in ${OUT_DIR}, found ${count}: ${ptx}")
endif()

foreach(prefix IN LISTS PREFIXES)
  execute_process(COMMAND "${FILECHECK}" "${CHECK_FILE}" "--input-file=${ptx}" "--check-prefix=${prefix}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FileCheck --check-prefix=${prefix} ${CHECK_FILE} failed on ${ptx}:\n${out}${err}")
  endif()
  message("FileCheck --check-prefix=${prefix}: passed")
endforeach()
