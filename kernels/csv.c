/* Prediction CSV parser and writer: see osseg_kernels.h. */
#include "osseg_kernels.h"
