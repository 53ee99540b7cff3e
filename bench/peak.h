/* peak.h - the measured FMA peak of this machine (see peak.c). */
#ifndef PEAK_H
#define PEAK_H

/* The best of three runs of FMA chains on every thread, in GFLOP/s. */
double peak_gflops(void);

#endif
