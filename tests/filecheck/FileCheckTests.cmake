# FileCheck tests on the PTX that `sigjit compile` emits (no GPU needed), and the CLI's error
# paths. Included from tests/CMakeLists.txt; every test is labelled "cpu".
#
# Each PTX test compiles one kernel with the CLI into a fresh directory and runs LLVM FileCheck
# on the .ptx (see run_filecheck.cmake). Where FileCheck is missing the tests are still
# registered and fail with a message saying what to install: they never pass silently.
find_program(SIGJIT_FILECHECK NAMES FileCheck FileCheck-14 HINTS /usr/lib/llvm-14/bin DOC "LLVM FileCheck for the PTX tests")
if(NOT SIGJIT_FILECHECK)
  message(WARNING "LLVM FileCheck not found: the filecheck.* tests will fail. Install llvm-14-tools (apt-get install llvm-14-tools).")
endif()

set(SIGJIT_FILECHECK_DIR ${CMAKE_CURRENT_LIST_DIR})

# sigjit_filecheck_test(NAME CHECK_FILE PREFIXES p1 [p2...] ARGS cli args...)
function(sigjit_filecheck_test name check_file)
  cmake_parse_arguments(PARSE_ARGV 2 FC "" "" "PREFIXES;ARGS")
  string(REPLACE ";" "|" args "${FC_ARGS}")
  string(REPLACE ";" "|" prefixes "${FC_PREFIXES}")
  add_test(NAME filecheck.${name}
    COMMAND ${CMAKE_COMMAND} -DCLI=$<TARGET_FILE:sigjit_cli> -DFILECHECK=${SIGJIT_FILECHECK}
            -DCHECK_FILE=${SIGJIT_FILECHECK_DIR}/${check_file} -DOUT_DIR=${CMAKE_CURRENT_BINARY_DIR}/filecheck/${name}
            -DARGS=${args} -DPREFIXES=${prefixes} -P ${SIGJIT_FILECHECK_DIR}/run_filecheck.cmake)
  set_tests_properties(filecheck.${name} PROPERTIES LABELS cpu TIMEOUT 120)
endfunction()

sigjit_filecheck_test(fast_sigmoid fast.check PREFIXES CHECK ABSENT ARGS --head-dim 128 --arch sm_90)
sigjit_filecheck_test(exact_sigmoid exact.check PREFIXES CHECK ABSENT ARGS --head-dim 128 --arch sm_90 --sigmoid exact)
sigjit_filecheck_test(fp16 fp16.check PREFIXES CHECK ABSENT ARGS --head-dim 128 --arch sm_90 --dtype fp16)
sigjit_filecheck_test(causal causal.check PREFIXES CHECK ARGS --head-dim 128 --arch sm_90 --causal)
sigjit_filecheck_test(causal_top_left causal_top_left.check PREFIXES CHECK ARGS --head-dim 128 --arch sm_90 --causal --causal-align top-left)
sigjit_filecheck_test(score_bias score_bias.check PREFIXES CHECK ARGS --head-dim 128 --arch sm_90 --score-bias --layout varlen)
sigjit_filecheck_test(no_score_bias score_bias.check PREFIXES NOSB ARGS --head-dim 128 --arch sm_90)
sigjit_filecheck_test(sm80_hd64 sm80_hd64.check PREFIXES CHECK ARGS --head-dim 64 --arch sm_80 --tile m64n32w4s3)
sigjit_filecheck_test(sm90 sm90.check PREFIXES CHECK ABSENT ARGS --head-dim 128 --arch sm_90a --tile h128x128c2s2o)
sigjit_filecheck_test(sm90_persistent sm90_persistent.check PREFIXES CHECK ABSENT ARGS --head-dim 128 --arch sm_90a --tile h128x128c2s2o_p)
sigjit_filecheck_test(sm90_pingpong sm90_pingpong.check PREFIXES CHECK ARGS --head-dim 128 --arch sm_90a --tile h128x128c2s2o_pp)
sigjit_filecheck_test(sm90_fma_sigmoid sm90_fma_sigmoid.check PREFIXES CHECK ABSENT ARGS --head-dim 128 --arch sm_90a --tile h128x128c2s2o_f4)
sigjit_filecheck_test(sm90_fma_sigmoid_exact sm90_fma_sigmoid.check PREFIXES CHECK ABSENT ARGS --head-dim 128 --arch sm_90a --sigmoid exact --tile h128x128c2s2o_f4)
sigjit_filecheck_test(bwd_fused_sm90a bwd_fused.check PREFIXES CHECK SM90 ARGS --direction bwd_fused --head-dim 128 --arch sm_90a --tile m128n32w8s2qs)
sigjit_filecheck_test(bwd_sm90_family bwd_sm90.check PREFIXES CHECK ABSENT ARGS --direction bwd_fused --head-dim 128 --arch sm_90a --tile hb128x64c2s2o)
sigjit_filecheck_test(bwd_sm90_bulk_dq bwd_sm90_bulk.check PREFIXES CHECK ABSENT ARGS --direction bwd_fused --head-dim 128 --arch sm_90a --tile hb128x64c2s2o_r)
# No --tile: the default fused backward on sm_90a is the Hopper family with bulk dQ reductions.
sigjit_filecheck_test(bwd_default_sm90a bwd_sm90_writer.check PREFIXES CHECK HANDOFF ABSENT ARGS --direction bwd_fused --head-dim 128 --arch sm_90a)
sigjit_filecheck_test(bwd_sm90_writer bwd_sm90_writer.check PREFIXES CHECK HANDOFF ABSENT ARGS --direction bwd_fused --head-dim 128 --arch sm_90a --tile hb128x64c2s2o_w)
sigjit_filecheck_test(bwd_fused_sm80 bwd_fused.check PREFIXES CHECK SM80 ARGS --direction bwd_fused --head-dim 128 --arch sm_80)

# ---- CLI error paths ---------------------------------------------------------------------------
# sigjit_cli_test(NAME EXPECT_EXIT zero|nonzero [STDERR_LINES n] [MATCH regex...] ARGS ...)
function(sigjit_cli_test name)
  cmake_parse_arguments(PARSE_ARGV 1 CT "" "EXPECT_EXIT;STDERR_LINES" "MATCH;ARGS")
  string(REPLACE ";" "|" args "${CT_ARGS}")
  string(REPLACE ";" "|" match "${CT_MATCH}")
  add_test(NAME cli.${name}
    COMMAND ${CMAKE_COMMAND} -DCLI=$<TARGET_FILE:sigjit_cli> -DARGS=${args} -DEXPECT_EXIT=${CT_EXPECT_EXIT}
            -DSTDERR_LINES=${CT_STDERR_LINES} -DMATCH=${match} -P ${SIGJIT_FILECHECK_DIR}/run_cli.cmake)
  set_tests_properties(cli.${name} PROPERTIES LABELS cpu TIMEOUT 60)
endfunction()

sigjit_cli_test(unsupported_head_dim EXPECT_EXIT nonzero STDERR_LINES 2 MATCH "--head-dim" "100" "32,64,96,128,256"
                ARGS compile --head-dim 100)
sigjit_cli_test(causal_align_needs_causal EXPECT_EXIT nonzero STDERR_LINES 1 MATCH "^sigjit: error: --causal-align top-left" "--causal"
                ARGS compile --causal-align top-left)
sigjit_cli_test(invalid_tile EXPECT_EXIT nonzero STDERR_LINES 1 MATCH "^sigjit: error: tile config m100n64w8s2 is invalid" "block_m=100"
                ARGS compile --tile m100n64w8s2)
sigjit_cli_test(malformed_tile EXPECT_EXIT nonzero STDERR_LINES 1 MATCH "^sigjit: error: --tile 'm128xn64': expected"
                ARGS compile --tile m128xn64)
sigjit_cli_test(tile_trailing_garbage EXPECT_EXIT nonzero STDERR_LINES 1 MATCH "^sigjit: error: --tile 'm128n64w8s2junk'"
                ARGS compile --tile m128n64w8s2junk)
sigjit_cli_test(old_arch EXPECT_EXIT nonzero STDERR_LINES 1 MATCH "^sigjit: error: arch: sm_75 is not supported" "sm_80 or newer"
                ARGS compile --arch sm_75)
sigjit_cli_test(malformed_arch EXPECT_EXIT nonzero STDERR_LINES 1 MATCH "^sigjit: error: arch: 'sm90' is not a target"
                ARGS compile --arch sm90)
sigjit_cli_test(bad_dtype EXPECT_EXIT nonzero STDERR_LINES 2 MATCH "--dtype" "fp4"
                ARGS compile --dtype fp4)
sigjit_cli_test(no_subcommand EXPECT_EXIT nonzero STDERR_LINES 2 MATCH "subcommand is required" ARGS)
sigjit_cli_test(unknown_subcommand EXPECT_EXIT nonzero MATCH "subcommand" ARGS frobnicate)
sigjit_cli_test(help EXPECT_EXIT zero STDERR_LINES 0 MATCH "Usage:" "compile" "info" ARGS --help)
sigjit_cli_test(compile_help EXPECT_EXIT zero STDERR_LINES 0 MATCH "--head-dim" "--tile" "--sigmoid" ARGS compile --help)
sigjit_cli_test(compile_ok EXPECT_EXIT zero STDERR_LINES 0
                MATCH "kernel +sigjit_fwd_bf16_d32_padded_full_scalar_nosb_fast_m[0-9]+n[0-9]+w[0-9]+s[0-9]+(qs)?_sm_80" "[1-9][0-9]* registers" "0 B spill stores"
                ARGS compile --head-dim 32 --arch sm_80 --layout padded --bias scalar)
sigjit_cli_test(info_without_gpu EXPECT_EXIT zero MATCH "^sigjit [0-9.]+ \\(NVRTC [0-9]+\\.[0-9]+" "GPU " ARGS info)
