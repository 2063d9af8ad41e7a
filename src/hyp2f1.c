/*-------------------------------------------------------------------------
 *
 * hyp2f1.c
 *	  The Gauss hypergeometric function 2F1(a, b; c; z) for real z < 1, as
 *	  the BG/NBD conditional expectation needs it.
 *
 * The series converges for |z| < 1, slowly near 1, and its terms can grow
 * large before they shrink.  Negative arguments are mapped into [0, 1) by
 * Pfaff's transformation, series whose terms would first grow by Euler's,
 * and hyp2f1_log_scaled() sums (1-z)^A 2F1(A, B; C; z) in logarithms with a
 * running scale, for the many-purchase, long-horizon and large-parameter
 * cases where the plain sum would overflow.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "prediction.h"

/*
 * The power series of 2F1(a, b; c; z) for 0 <= z < 1, summed until a term
 * no longer changes the sum.  Returns NaN when it does not settle within
 * the term limit (z too close to 1 for the parameters) or c is a pole.
 */
static double
hyp2f1_series(double a, double b, double c, double z)
{
	double		term = 1.0;
	double		sum = 1.0;
	int			k;

	for (k = 0; k < 2000000; k++)
	{
		double		denom = (c + k) * (k + 1.0);

		if (denom == 0.0)
			return NAN;
		term *= (a + k) * (b + k) / denom * z;
		sum += term;
		if (term == 0.0)
			return sum;
		if (fabs(term) <= 1e-16 * fabs(sum) && k > 2)
			return sum;
		if (!isfinite(sum))
			return NAN;
	}
	return NAN;
}

/*
 * 2F1(a, b; c; z) for real z < 1.
 *
 * Negative z is mapped into [0, 1) by Pfaff's transformation
 * 2F1(a,b;c;z) = (1-z)^-a 2F1(a, c-b; c; z/(z-1)), which also covers large
 * negative arguments.  For z in [0, 1) the series converges geometrically;
 * when c - a - b < 0 its terms first grow like k^(a+b-c-1), so Euler's
 * transformation 2F1(a,b;c;z) = (1-z)^(c-a-b) 2F1(c-a, c-b; c; z) is used
 * to sum a series whose terms decay instead.
 */
double
prediction_hyp2f1(double a, double b, double c, double z)
{
	if (isnan(z) || z >= 1.0)
		return NAN;
	if (z < 0.0)
	{
		double		w = z / (z - 1.0);

		return pow(1.0 - z, -a) * prediction_hyp2f1(a, c - b, c, w);
	}
	if (c - a - b < 0.0 && z > 0.5)
		return pow(1.0 - z, c - a - b) * hyp2f1_series(c - a, c - b, c, z);
	return hyp2f1_series(a, b, c, z);
}

/*
 * ln((1-z)^A 2F1(A, B; C; z)) for 0 <= z < 1 and A, B, C > 0, where every
 * term of the series is positive: the terms are summed with a running scale
 * so that neither a peak of large terms (large A and z near 1) nor a long
 * tail overflows, and no cancellation can occur.  NaN when it does not
 * settle within the term limit.
 */
double
hyp2f1_log_scaled(double A, double B, double C, double z)
{
	double		term = 1.0;
	double		sum = 1.0;
	double		log_scale = 0.0;
	int			k;

	for (k = 0; k < 2000000; k++)
	{
		term *= (A + k) * (B + k) / ((C + k) * (k + 1.0)) * z;
		sum += term;
		if (sum > 1e250)
		{
			term *= 1e-250;
			sum *= 1e-250;
			log_scale += 250.0 * M_LN10;
		}
		if (term <= 1e-17 * sum && (A + k) * (B + k) * z < (C + k) * (k + 1.0))
			return A * log1p(-z) + log_scale + log(sum);
		if (!isfinite(sum))
			break;
	}
	return NAN;
}
