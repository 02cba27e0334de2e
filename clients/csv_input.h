/* Loading the prediction CSVs a subcommand reads: map, parse and index
 * them (in parallel, one file per thread), with errors printed in the
 * tool's format ("osseg CMD: FILE:LINE: problem"). */
#ifndef OSSEG_CLIENTS_CSV_INPUT_H
#define OSSEG_CLIENTS_CSV_INPUT_H

#include "csv_index.h"
#include "osseg_kernels.h"

/* Opens, parses and indexes by (image, class) the n files of paths into
 * csv[i] and ix[i] (both arrays zeroed by the caller), using up to
 * `threads` threads. A duplicate (image, class) is an error naming both
 * lines. On any error prints the one of the first failing file (in argument
 * order, so the report does not depend on timing) and returns -1; the
 * caller closes what was opened either way (csv_input_free). */
int csv_input_load_all(const char *cmd, char *const *paths, size_t n, unsigned threads,
                       struct osseg_csv *csv, struct csv_index *ix);
void csv_input_free(size_t n, struct osseg_csv *csv, struct csv_index *ix);

/* Parses the rle of every row whose used[] flag is 0, so that a malformed
 * row is reported even when no other file refers to it. Stores how many
 * there were in *unused. Prints and returns -1 on the first bad row. */
int csv_input_check_unused(const char *cmd, const struct osseg_csv *csv,
                           const unsigned char *used, uint64_t npixels, size_t *unused);

/* Prints the error of a failed osseg_rle_parse of row. */
void csv_input_rle_error(const char *cmd, const struct osseg_csv *csv,
                         const struct osseg_csv_row *row, const struct osseg_diag *diag);

#endif
