/* Internals of the prediction CSV parser (csv.c, csv_avx2.c, csv_avx512.c).
 *
 * The parser spends its time looking for the next byte that ends or
 * interrupts a field: ',' '"' LF CR and NUL (NUL is never legal, so finding
 * it in the same sweep costs nothing). That search is the only SIMD part;
 * an rle field of a few kilobytes is crossed 32 or 64 bytes per step. */
#ifndef OSSEG_CSV_INTERNAL_H
#define OSSEG_CSV_INTERNAL_H

#include "osseg_kernels.h"

/* First byte in [p, end) that is one of , " \n \r \0, or end. Never reads
 * outside [p, end).
 *
 * The SIMD variants classify bytes with two 16-entry table lookups (pshufb)
 * on the low and high nibble, ANDed: bit 0 marks low nibbles 0, A, D and
 * high nibble 0 (NUL, LF, CR); bit 1 marks low nibbles 2, C and high
 * nibble 2 ('"', ','). A byte is special exactly when the AND is non-zero:
 * two shuffles and a test per vector instead of five compares. */
#define OSSEG__CSV_LUT_LO 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 0, 0
#define OSSEG__CSV_LUT_HI 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
typedef const char *(*osseg__csv_scan_fn)(const char *p, const char *end);

const char *osseg__csv_scan_generic(const char *p, const char *end);
const char *osseg__csv_scan_avx2(const char *p, const char *end);
const char *osseg__csv_scan_avx512(const char *p, const char *end);

/* The variant chosen by the CPU features (honours
 * osseg_cpu_features_disable()). */
osseg__csv_scan_fn osseg__csv_scan_pick(void);

#endif
