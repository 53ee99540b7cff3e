/*
 * pa_status.c - the names of the status codes kernels return.
 */
#include "polyattn.h"

/* pa_strerror: see polyattn.h.  Every code has its own sentence; an
 * unknown code says so rather than returning NULL. */
const char *pa_strerror(pa_status s)
{
	switch (s) {
	case PA_OK: return "success";
	case PA_ERR_ARGUMENT: return "bad argument: batch or n is not positive, "
	                             "the sizes overflow, or a buffer written "
	                             "overlaps one read (out an input, a "
	                             "gradient an input, out, saved, grad_out "
	                             "or another gradient)";
	case PA_ERR_NULL: return "a NULL pointer was passed for inputs, an input "
	                         "or out";
	case PA_ERR_NOMEM: return "out of memory allocating the workspace";
	case PA_ERR_BOUND: return "a factor input entry exceeds the bound the "
	                          "approximation was compiled for (K_info.bound); "
	                          "raise the bound or set fallback = exact";
	case PA_ERR_NONFINITE: return "an input holds NaN or infinity";
	case PA_ERR_UNSUPPORTED: return "the kernel does not support this request";
	case PA_ERR_RANGE: return "the value entries are so large that the "
	                          "output could overflow float (the product of "
	                          "each value input's largest |entry| times "
	                          "n^(t-1) reaches 2^100)";
	}
	return "unknown pa_status code";
}
