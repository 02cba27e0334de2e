/* The daemon request fuzzer's entry point, shared with its corpus replay. */
#ifndef OSSEG_TESTS_FUZZ_REQUEST_H
#define OSSEG_TESTS_FUZZ_REQUEST_H

#include <stddef.h>
#include <stdint.h>

struct fuzz_request_result {
  unsigned requests; /* frames that unpacked as a Request */
  unsigned errors;   /* of them, refused with an Error */
  unsigned segments; /* Segments validated, pipeline made */
  int closed;        /* the daemon would have closed the connection */
  int partial;       /* the stream ended inside a frame (the daemon waits) */
};

/* Runs one fuzzer input (first byte: piece size - 1; then the stream). */
void fuzz_request_run(const uint8_t *data, size_t size, struct fuzz_request_result *res);

#endif
