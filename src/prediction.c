/*-------------------------------------------------------------------------
 *
 * prediction.c
 *	  Predictive customer analytics: the BG/NBD model of purchase frequency
 *	  and dropout and the Gamma-Gamma model of spend per order (Fader,
 *	  Hardie & Lee 2005), fitted by maximum likelihood and used to score
 *	  customers.
 *
 * The orchestration is SQL (sql/install/50_prediction.sql): fit_models()
 * reads each customer's sufficient statistics through
 * automation._order_statistics(), compresses them (customers with the same
 * (x, t_x, T) are one weighted row), hands the arrays to the fitting
 * functions here and stores the result.  This file holds what SQL would do
 * badly: one read of the shop's orders with the privileges of the role that
 * bound them, the log-likelihoods, a bounded Nelder-Mead optimiser on the
 * logarithms of the parameters, and the closed-form conditional
 * expectations used to score customers (with the Gauss hypergeometric
 * function of hyp2f1.c).
 *
 * Notation follows the papers: x is the number of repeat purchases (orders
 * on distinct days after the first day), t_x the time of the last purchase
 * and T the age of the customer, both measured from the first purchase, in
 * the model's time unit; m is the mean value of the repeat purchases.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "nodes/params.h"
#include "tcop/dest.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/typcache.h"
#include "catalog/pg_collation.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "automation.h"
#include "prediction.h"

PG_FUNCTION_INFO_V1(automation_hyp2f1);
PG_FUNCTION_INFO_V1(automation_bgnbd_p_alive);
PG_FUNCTION_INFO_V1(automation_bgnbd_expected_purchases);
PG_FUNCTION_INFO_V1(automation_gg_expected_spend);
PG_FUNCTION_INFO_V1(automation_fit_bgnbd);
PG_FUNCTION_INFO_V1(automation_fit_gamma_gamma);
PG_FUNCTION_INFO_V1(automation_score);
PG_FUNCTION_INFO_V1(automation_order_statistics);
PG_FUNCTION_INFO_V1(automation_prediction_settings);

/*
 * Log-parameters are kept within e^-15 .. e^18, except the BG/NBD dropout
 * parameters a and b, kept within e^-10 .. e^10: beyond that the dropout
 * probability a / (a + b) no longer changes the predictions, while the
 * likelihood is flat along a + b and a search would wander there.
 */
#define LOG_PARAM_MIN	(-15.0)
#define LOG_PARAM_MAX	18.0
#define LOG_DROPOUT_MIN (-10.0)
#define LOG_DROPOUT_MAX 10.0

typedef struct Bounds
{
	double		lo[4];
	double		hi[4];
} Bounds;

static const Bounds bgnbd_bounds = {
	{LOG_PARAM_MIN, LOG_PARAM_MIN, LOG_DROPOUT_MIN, LOG_DROPOUT_MIN},
	{LOG_PARAM_MAX, LOG_PARAM_MAX, LOG_DROPOUT_MAX, LOG_DROPOUT_MAX}
};
static const Bounds gg_bounds = {
	{LOG_PARAM_MIN, LOG_PARAM_MIN, LOG_PARAM_MIN},
	{LOG_PARAM_MAX, LOG_PARAM_MAX, LOG_PARAM_MAX}
};

/* Seconds in one unit of automation.prediction_time_unit. */
static double
unit_seconds(int unit)
{
	switch (unit)
	{
		case PREDICTION_UNIT_DAYS:
			return 86400.0;
		case PREDICTION_UNIT_MONTHS:
			return 86400.0 * 365.25 / 12.0;
		default:
			return 7.0 * 86400.0;
	}
}

static const char *
unit_name(int unit)
{
	switch (unit)
	{
		case PREDICTION_UNIT_DAYS:
			return "days";
		case PREDICTION_UNIT_MONTHS:
			return "months";
		default:
			return "weeks";
	}
}

/* ----------------------------------------------------------------
 * Closed-form BG/NBD and Gamma-Gamma quantities
 * ----------------------------------------------------------------
 */

/*
 * The log of the odds of death used by P(alive) and the conditional
 * expectation: ln(a / (b + x - 1)) + (r + x) ln((alpha + T) / (alpha + t_x)).
 * Only defined for x > 0.
 */
static double
bgnbd_log_death_odds(double x, double t_x, double t_cal,
					 double r, double alpha, double a, double b)
{
	return log(a) - log(b + x - 1.0) +
		(r + x) * (log(alpha + t_cal) - log(alpha + t_x));
}

/*
 * P(alive | x, t_x, T): the probability that a customer with this history
 * has not dropped out (FHL 2005, eq. 11).  Customers without repeat
 * purchases are alive by the model's assumption that dropout only happens
 * right after a purchase.
 */
double
bgnbd_p_alive(double x, double t_x, double t_cal,
			  double r, double alpha, double a, double b)
{
	double		l;

	if (x <= 0.0)
		return 1.0;
	l = bgnbd_log_death_odds(x, t_x, t_cal, r, alpha, a, b);
	if (l > 700.0)
		return 0.0;
	return 1.0 / (1.0 + exp(l));
}

/*
 * E[X(T, T + t) | x, t_x, T]: the expected number of purchases in the next
 * t time units (FHL 2005, eq. 10):
 *
 *   (a+b+x-1)/(a-1) [1 - ((alpha+T)/(alpha+T+t))^(r+x)
 *                        2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))]
 *   / (1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))
 *
 * With z = t/(alpha+T+t) < 1, the product G = (1-z)^(r+x) 2F1(...) is
 * summed with positive terms and a running scale (hyp2f1_log_scaled), which
 * stays accurate for many repeat purchases, horizons long against alpha + T,
 * and the very large a and b of shops where hardly anyone drops out.  When
 * a + b + x - 1 <= 0 (possible only with x = 0 and a + b < 1) the terms
 * change sign, and G is taken from Euler's transformation
 * (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z) instead.  a = 1 is a removable
 * singularity: a is moved off it by 1e-7.
 */
double
bgnbd_expected_purchases(double t, double x, double t_x, double t_cal,
						 double r, double alpha, double a, double b)
{
	double		z,
				g,
				num;

	if (t <= 0.0)
		return 0.0;
	if (fabs(a - 1.0) < 1e-7)
		a = a < 1.0 ? 1.0 - 1e-7 : 1.0 + 1e-7;
	z = t / (alpha + t_cal + t);
	if (a + b + x - 1.0 > 0.0)
		g = exp(hyp2f1_log_scaled(r + x, b + x, a + b + x - 1.0, z));
	else
		g = exp((a - 1.0) * log1p(-z)) *
			prediction_hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z);
	num = (a + b + x - 1.0) / (a - 1.0) * (1.0 - g);
	if (x > 0.0)
	{
		double		l = bgnbd_log_death_odds(x, t_x, t_cal, r, alpha, a, b);

		if (l > 700.0)
			return 0.0;
		num /= 1.0 + exp(l);
	}
	return num;
}

/*
 * E[M | x, m]: the expected spend per order of a customer with x repeat
 * purchases of mean value m (FHL 2005, "RFM and CLV", eq. 5):
 * p (gamma + x m) / (p x + q - 1), a weighted mean of the population mean
 * p gamma / (q - 1) and the customer's own mean.  Needs q > 1.
 */
double
gg_expected_spend(double x, double mean_value, double p, double q, double gamma)
{
	if (x <= 0.0 || isnan(mean_value))
	{
		x = 0.0;
		mean_value = 0.0;
	}
	return p * (gamma + x * mean_value) / (p * x + q - 1.0);
}

/* ----------------------------------------------------------------
 * Bounded Nelder-Mead on log-parameters
 * ----------------------------------------------------------------
 */

#define NM_MAX_DIM 4

typedef double (*objective_fn) (const double *theta, void *arg);

/*
 * Minimises f from theta (dimension n) by the Nelder-Mead simplex method,
 * every vertex clamped to the bounds.  Stops when the values at the
 * vertices agree to 1e-12 relative and the simplex has shrunk below 1e-7,
 * or after max_iter iterations.  Leaves the best vertex in theta and its
 * value in *fbest; returns the iterations used.
 */
static int
nelder_mead_once(objective_fn f, void *arg, int n, const Bounds *bounds,
				 double *theta, double *fbest, int max_iter)
{
	double		x[NM_MAX_DIM + 1][NM_MAX_DIM];
	double		fx[NM_MAX_DIM + 1];
	double		centroid[NM_MAX_DIM],
				xr[NM_MAX_DIM],
				xe[NM_MAX_DIM],
				xc[NM_MAX_DIM];
	int			iter,
				i,
				j;

	for (i = 0; i <= n; i++)
	{
		for (j = 0; j < n; j++)
			x[i][j] = theta[j];
		if (i > 0)
		{
			double		step = 0.5;

			if (x[i][i - 1] + step > bounds->hi[i - 1])
				step = -step;
			x[i][i - 1] += step;
		}
		fx[i] = f(x[i], arg);
	}

	for (iter = 0; iter < max_iter; iter++)
	{
		int			best = 0,
					worst = 0,
					second = 0;
		double		fr,
					size = 0.0;

		CHECK_FOR_INTERRUPTS();
		for (i = 1; i <= n; i++)
		{
			if (fx[i] < fx[best])
				best = i;
			if (fx[i] > fx[worst])
				worst = i;
		}
		second = best;
		for (i = 0; i <= n; i++)
			if (i != worst && fx[i] > fx[second])
				second = i;

		for (i = 0; i <= n; i++)
			for (j = 0; j < n; j++)
				size = Max(size, fabs(x[i][j] - x[best][j]));
		if (fabs(fx[worst] - fx[best]) <= 1e-12 * (fabs(fx[best]) + 1e-12) &&
			size < 1e-7)
			break;

		for (j = 0; j < n; j++)
		{
			centroid[j] = 0.0;
			for (i = 0; i <= n; i++)
				if (i != worst)
					centroid[j] += x[i][j];
			centroid[j] /= n;
		}
#define CLAMP(v) Min(Max((v), bounds->lo[j]), bounds->hi[j])
		for (j = 0; j < n; j++)
			xr[j] = CLAMP(2.0 * centroid[j] - x[worst][j]);
		fr = f(xr, arg);
		if (fr < fx[best])
		{
			double		fe;

			for (j = 0; j < n; j++)
				xe[j] = CLAMP(3.0 * centroid[j] - 2.0 * x[worst][j]);
			fe = f(xe, arg);
			if (fe < fr)
			{
				memcpy(x[worst], xe, sizeof(double) * n);
				fx[worst] = fe;
			}
			else
			{
				memcpy(x[worst], xr, sizeof(double) * n);
				fx[worst] = fr;
			}
		}
		else if (fr < fx[second])
		{
			memcpy(x[worst], xr, sizeof(double) * n);
			fx[worst] = fr;
		}
		else
		{
			double		fc;
			bool		outside = fr < fx[worst];

			for (j = 0; j < n; j++)
				xc[j] = outside ? centroid[j] + 0.5 * (xr[j] - centroid[j])
					: centroid[j] + 0.5 * (x[worst][j] - centroid[j]);
			fc = f(xc, arg);
			if (fc < Min(fr, fx[worst]))
			{
				memcpy(x[worst], xc, sizeof(double) * n);
				fx[worst] = fc;
			}
			else
			{
				/* shrink toward the best vertex */
				for (i = 0; i <= n; i++)
				{
					if (i == best)
						continue;
					for (j = 0; j < n; j++)
						x[i][j] = x[best][j] + 0.5 * (x[i][j] - x[best][j]);
					fx[i] = f(x[i], arg);
				}
			}
		}
#undef CLAMP
	}

	j = 0;
	for (i = 1; i <= n; i++)
		if (fx[i] < fx[j])
			j = i;
	memcpy(theta, x[j], sizeof(double) * n);
	*fbest = fx[j];
	return iter;
}

/*
 * Nelder-Mead with restarts: a simplex can collapse before it reaches the
 * optimum, so the search is started again from the best point with a fresh
 * simplex until a restart no longer improves the value (at most 10 runs).
 * Returns the total number of iterations.
 */
static int
nelder_mead(objective_fn f, void *arg, int n, const Bounds *bounds,
			double *theta, double *fbest)
{
	int			iterations = 0;
	int			run;
	double		previous = f(theta, arg);

	for (run = 0; run < 10; run++)
	{
		double		value;

		iterations += nelder_mead_once(f, arg, n, bounds, theta, &value, 2000);
		if (run > 0 && previous - value <= 1e-10 * (fabs(value) + 1e-10))
		{
			previous = value;
			break;
		}
		previous = value;
	}
	*fbest = previous;
	return iterations;
}

/* A Normal(prior, 1) penalty on each log-parameter, scaled by weight. */
static double
log_prior_penalty(const double *theta, const double *prior, int n, double weight)
{
	double		s = 0.0;
	int			j;

	if (weight <= 0.0)
		return 0.0;
	for (j = 0; j < n; j++)
		s += 0.5 * (theta[j] - prior[j]) * (theta[j] - prior[j]);
	return weight * s;
}

/* ----------------------------------------------------------------
 * Log-likelihoods over compressed statistics
 * ----------------------------------------------------------------
 */

/*
 * Distinct values of one statistic and, per compressed row, the index of
 * its value: the logarithms that depend on the parameters are then taken
 * once per distinct value and evaluation instead of once per row.
 */
typedef struct DistinctValues
{
	int			count;
	double	   *values;
	int		   *index;			/* per row */
} DistinctValues;

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

static void
distinct_values(const double *v, int n, DistinctValues *out)
{
	double	   *sorted = palloc(sizeof(double) * Max(n, 1));
	int			i,
				k = 0;

	memcpy(sorted, v, sizeof(double) * n);
	qsort(sorted, n, sizeof(double), cmp_double);
	for (i = 0; i < n; i++)
		if (k == 0 || sorted[k - 1] != sorted[i])
			sorted[k++] = sorted[i];
	out->count = k;
	out->values = sorted;
	out->index = palloc(sizeof(int) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		double	   *hit = bsearch(&v[i], sorted, k, sizeof(double), cmp_double);

		out->index[i] = (int) (hit - sorted);
	}
}

typedef struct BgnbdData
{
	int			n;
	double	   *weight;
	DistinctValues x,
				t_x,
				t_cal;
	double	   *scratch;		/* per distinct x, t_x, T: logs and terms */
	const double *prior;
	double		prior_weight;
} BgnbdData;

/*
 * The BG/NBD log-likelihood (FHL 2005, eq. 6 in the form of their
 * implementation note) summed over the compressed rows:
 *
 *   ln L = ln G(r+x) - ln G(r) + r ln alpha
 *        + ln B(a, b+x) - ln B(a, b)
 *        + ln( (alpha+T)^-(r+x) + [x > 0] a/(b+x-1) (alpha+t_x)^-(r+x) )
 */
static double
bgnbd_log_likelihood(const double *theta, BgnbdData *d)
{
	double		r = exp(theta[0]),
				alpha = exp(theta[1]),
				a = exp(theta[2]),
				b = exp(theta[3]);
	double	   *per_x = d->scratch;
	double	   *log_tx = per_x + d->x.count;
	double	   *log_t = log_tx + d->t_x.count;
	double		base = -lgamma(r) + r * log(alpha) + lgamma(a + b) - lgamma(b);
	double		lnl = 0.0;
	int			i;

	for (i = 0; i < d->x.count; i++)
	{
		double		x = d->x.values[i];

		per_x[i] = lgamma(r + x) + lgamma(b + x) - lgamma(a + b + x);
	}
	for (i = 0; i < d->t_x.count; i++)
		log_tx[i] = log(alpha + d->t_x.values[i]);
	for (i = 0; i < d->t_cal.count; i++)
		log_t[i] = log(alpha + d->t_cal.values[i]);

	for (i = 0; i < d->n; i++)
	{
		double		x = d->x.values[d->x.index[i]];
		double		a3 = -(r + x) * log_t[d->t_cal.index[i]];
		double		row = per_x[d->x.index[i]];

		if (x > 0.0)
		{
			double		a4 = log(a) - log(b + x - 1.0) - (r + x) * log_tx[d->t_x.index[i]];

			row += a3 > a4 ? a3 + log1p(exp(a4 - a3)) : a4 + log1p(exp(a3 - a4));
		}
		else
			row += a3;
		lnl += d->weight[i] * row;
	}
	{
		double		total = 0.0;

		for (i = 0; i < d->n; i++)
			total += d->weight[i];
		lnl += total * base;
	}
	return lnl;
}

static double
bgnbd_objective(const double *theta, void *arg)
{
	BgnbdData  *d = (BgnbdData *) arg;
	double		v = -bgnbd_log_likelihood(theta, d) +
		log_prior_penalty(theta, d->prior, 4, d->prior_weight);

	return isfinite(v) ? v : DBL_MAX;
}

typedef struct GammaGammaData
{
	int			n;
	double	   *weight;
	double	   *x;
	double	   *m;
	double	   *log_m;
	double	   *log_x;
	DistinctValues distinct_x;
	double	   *per_x;			/* per distinct x: ln G(px+q) - ln G(px) */
	const double *prior;
	double		prior_weight;
} GammaGammaData;

/*
 * The Gamma-Gamma log-likelihood of the customers' mean repeat order values
 * (FHL 2005, "RFM and CLV", eq. 3), with q = 1 + e^theta so that the mean
 * spend p gamma / (q - 1) exists:
 *
 *   ln G(px+q) - ln G(px) - ln G(q) + q ln gamma + (px-1) ln m + px ln x
 *   - (px+q) ln(gamma + m x)
 */
static double
gg_log_likelihood(const double *theta, GammaGammaData *d)
{
	double		p = exp(theta[0]),
				q = 1.0 + exp(theta[1]),
				gamma = exp(theta[2]);
	double		base = -lgamma(q) + q * log(gamma);
	double		lnl = 0.0;
	int			i;

	for (i = 0; i < d->distinct_x.count; i++)
	{
		double		px = p * d->distinct_x.values[i];

		d->per_x[i] = lgamma(px + q) - lgamma(px);
	}
	for (i = 0; i < d->n; i++)
	{
		double		px = p * d->x[i];
		double		row = d->per_x[d->distinct_x.index[i]] + base +
			(px - 1.0) * d->log_m[i] + px * d->log_x[i] -
			(px + q) * log(gamma + d->m[i] * d->x[i]);

		lnl += d->weight[i] * row;
	}
	return lnl;
}

static double
gg_objective(const double *theta, void *arg)
{
	GammaGammaData *d = (GammaGammaData *) arg;
	double		v = -gg_log_likelihood(theta, d) +
		log_prior_penalty(theta, d->prior, 3, d->prior_weight);

	return isfinite(v) ? v : DBL_MAX;
}

/* ----------------------------------------------------------------
 * SQL-callable functions
 * ----------------------------------------------------------------
 */

/* Extracts a float8[] argument without NULLs into a palloc'd C array. */
static double *
float8_array(ArrayType *arr, const char *name, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	double	   *out;
	int			i;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", name)));
	deconstruct_array(arr, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, n);
	out = palloc(sizeof(double) * Max(*n, 1));
	for (i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain NULL", name)));
		out[i] = DatumGetFloat8(elems[i]);
	}
	return out;
}

static Datum
return_record(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/* automation._hyp2f1(a, b, c, z): exposed for tests of the function itself. */
Datum
automation_hyp2f1(PG_FUNCTION_ARGS)
{
	double		v = prediction_hyp2f1(PG_GETARG_FLOAT8(0), PG_GETARG_FLOAT8(1),
									  PG_GETARG_FLOAT8(2), PG_GETARG_FLOAT8(3));

	if (!isfinite(v))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(v);
}

/* Rejects model parameters that are not positive finite numbers. */
static void
check_parameters(const char *const *names, const double *values, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (!(values[i] > 0.0) || !isfinite(values[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("model parameter %s must be a positive number", names[i]),
					 errdetail("It is %g.", values[i])));
}

static void
check_history(double x, double t_x, double t_cal)
{
	if (!(x >= 0.0) || !(t_x >= 0.0) || !(t_cal >= t_x) || !isfinite(t_cal))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a customer history needs 0 <= x, 0 <= t_x <= t"),
				 errdetail("x = %g, t_x = %g, t = %g.", x, t_x, t_cal),
				 errhint("x counts repeat purchases, t_x is the time of the last one and t the time since the first purchase, both from the first purchase.")));
	if (x > 0.0 && t_x <= 0.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a customer with repeat purchases needs t_x > 0"),
				 errdetail("x = %g, t_x = %g.", x, t_x)));
}

static const char *const bgnbd_names[] = {"r", "alpha", "a", "b"};
static const char *const gg_names[] = {"p", "q", "gamma"};

/* automation._p_alive(x, t_x, t, r, alpha, a, b) */
Datum
automation_bgnbd_p_alive(PG_FUNCTION_ARGS)
{
	double		x = PG_GETARG_FLOAT8(0),
				t_x = PG_GETARG_FLOAT8(1),
				t_cal = PG_GETARG_FLOAT8(2);
	double		par[4];
	int			i;

	for (i = 0; i < 4; i++)
		par[i] = PG_GETARG_FLOAT8(3 + i);
	check_parameters(bgnbd_names, par, 4);
	check_history(x, t_x, t_cal);
	PG_RETURN_FLOAT8(bgnbd_p_alive(x, t_x, t_cal, par[0], par[1], par[2], par[3]));
}

/* automation._expected_purchases(horizon, x, t_x, t, r, alpha, a, b) */
Datum
automation_bgnbd_expected_purchases(PG_FUNCTION_ARGS)
{
	double		t = PG_GETARG_FLOAT8(0),
				x = PG_GETARG_FLOAT8(1),
				t_x = PG_GETARG_FLOAT8(2),
				t_cal = PG_GETARG_FLOAT8(3);
	double		par[4],
				v;
	int			i;

	for (i = 0; i < 4; i++)
		par[i] = PG_GETARG_FLOAT8(4 + i);
	check_parameters(bgnbd_names, par, 4);
	check_history(x, t_x, t_cal);
	if (!(t >= 0.0) || !isfinite(t))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the horizon must be a finite number of time units, at least 0")));
	v = bgnbd_expected_purchases(t, x, t_x, t_cal, par[0], par[1], par[2], par[3]);
	if (!isfinite(v))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("the expected number of purchases cannot be computed for these values"),
				 errdetail("The hypergeometric series did not converge for horizon %g, x = %g, t = %g.", t, x, t_cal)));
	PG_RETURN_FLOAT8(v);
}

/* automation._expected_spend(x, mean_value, p, q, gamma) */
Datum
automation_gg_expected_spend(PG_FUNCTION_ARGS)
{
	double		x;
	double		m = PG_ARGISNULL(1) ? NAN : PG_GETARG_FLOAT8(1);
	double		par[3];
	int			i;

	/* (no history, no prediction: as p_alive and expected_purchases) */
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	x = PG_GETARG_FLOAT8(0);
	for (i = 0; i < 3; i++)
	{
		if (PG_ARGISNULL(2 + i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("model parameter %s must not be null", gg_names[i])));
		par[i] = PG_GETARG_FLOAT8(2 + i);
	}
	check_parameters(gg_names, par, 3);
	if (par[1] <= 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model parameter q must be greater than 1"),
				 errdetail("The mean spend p * gamma / (q - 1) only exists for q > 1.")));
	if (!(x >= 0.0) || !isfinite(x))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("x must be a finite number, at least 0")));
	/* a customer with repeat purchases has a mean spend: a real amount, not negative */
	if (x > 0.0 && (PG_ARGISNULL(1) || !isfinite(m) || m < 0.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mean_value must be a finite amount, at least 0, when x is above 0"),
				 errhint("mean_value may be NULL only when x is 0.")));
	PG_RETURN_FLOAT8(gg_expected_spend(x, m, par[0], par[1], par[2]));
}

/*
 * automation._fit_bgnbd(x float8[], t_x float8[], t float8[], n float8[],
 *                       start float8[], prior_weight float8)
 *   RETURNS (r, alpha, a, b, log_likelihood, iterations, at_bound)
 *
 * Maximises the BG/NBD likelihood of the compressed rows (n customers
 * each) from start (r, alpha, a, b).  With prior_weight > 0 the start is
 * also the prior: each log-parameter gets a Normal(log start, 1) penalty
 * times prior_weight (a maximum a posteriori fit).  log_likelihood is the
 * likelihood alone; at_bound says a log-parameter ended within 0.01 of its
 * bounds, i.e. the data did not determine it.
 */
Datum
automation_fit_bgnbd(PG_FUNCTION_ARGS)
{
	BgnbdData	d;
	double	   *x,
			   *t_x,
			   *t_cal,
			   *start;
	int			n1,
				n2,
				n3,
				n4,
				i,
				iterations;
	double		theta[4],
				prior[4],
				value;
	Datum		values[7];
	bool		nulls[7] = {false};
	bool		at_bound = false;

	x = float8_array(PG_GETARG_ARRAYTYPE_P(0), "x", &n1);
	t_x = float8_array(PG_GETARG_ARRAYTYPE_P(1), "t_x", &n2);
	t_cal = float8_array(PG_GETARG_ARRAYTYPE_P(2), "t", &n3);
	d.weight = float8_array(PG_GETARG_ARRAYTYPE_P(3), "n", &n4);
	start = float8_array(PG_GETARG_ARRAYTYPE_P(4), "start", &i);
	if (n1 != n2 || n1 != n3 || n1 != n4 || i != 4)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("x, t_x, t and n must have the same length and start 4 elements")));
	check_parameters(bgnbd_names, start, 4);
	for (i = 0; i < n1; i++)
		check_history(x[i], t_x[i], t_cal[i]);

	d.n = n1;
	distinct_values(x, n1, &d.x);
	distinct_values(t_x, n1, &d.t_x);
	distinct_values(t_cal, n1, &d.t_cal);
	d.scratch = palloc(sizeof(double) * (d.x.count + d.t_x.count + d.t_cal.count + 1));
	for (i = 0; i < 4; i++)
		prior[i] = theta[i] = log(start[i]);
	d.prior = prior;
	d.prior_weight = PG_ARGISNULL(5) ? 0.0 : PG_GETARG_FLOAT8(5);

	for (i = 0; i < 4; i++)
		theta[i] = Min(Max(theta[i], bgnbd_bounds.lo[i]), bgnbd_bounds.hi[i]);
	iterations = nelder_mead(bgnbd_objective, &d, 4, &bgnbd_bounds, theta, &value);
	for (i = 0; i < 4; i++)
	{
		values[i] = Float8GetDatum(exp(theta[i]));
		if (theta[i] < bgnbd_bounds.lo[i] + 0.01 || theta[i] > bgnbd_bounds.hi[i] - 0.01)
			at_bound = true;
	}
	value = d.n > 0 ? bgnbd_log_likelihood(theta, &d) : 0.0;
	values[4] = Float8GetDatum(value);
	nulls[4] = !isfinite(value);
	values[5] = Int32GetDatum(iterations);
	values[6] = BoolGetDatum(at_bound || !isfinite(value));
	PG_RETURN_DATUM(return_record(fcinfo, values, nulls));
}

/*
 * automation._fit_gamma_gamma(x float8[], mean_value float8[], n float8[],
 *                             start float8[], prior_weight float8)
 *   RETURNS (p, q, gamma, log_likelihood, iterations, at_bound)
 *
 * Like _fit_bgnbd for the Gamma-Gamma model, over rows with x >= 1 and a
 * positive mean value (the caller leaves the others out).
 */
Datum
automation_fit_gamma_gamma(PG_FUNCTION_ARGS)
{
	GammaGammaData d;
	double	   *start;
	int			n1,
				n2,
				n3,
				i,
				iterations;
	double		theta[3],
				prior[3],
				value;
	Datum		values[6];
	bool		nulls[6] = {false};
	bool		at_bound = false;

	d.x = float8_array(PG_GETARG_ARRAYTYPE_P(0), "x", &n1);
	d.m = float8_array(PG_GETARG_ARRAYTYPE_P(1), "mean_value", &n2);
	d.weight = float8_array(PG_GETARG_ARRAYTYPE_P(2), "n", &n3);
	start = float8_array(PG_GETARG_ARRAYTYPE_P(3), "start", &i);
	if (n1 != n2 || n1 != n3 || i != 3)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("x, mean_value and n must have the same length and start 3 elements")));
	check_parameters(gg_names, start, 3);
	if (start[1] <= 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model parameter q must be greater than 1")));
	d.n = n1;
	d.log_m = palloc(sizeof(double) * Max(n1, 1));
	d.log_x = palloc(sizeof(double) * Max(n1, 1));
	for (i = 0; i < n1; i++)
	{
		if (!(d.x[i] >= 1.0) || !(d.m[i] > 0.0) || !isfinite(d.m[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the Gamma-Gamma model needs x >= 1 and a positive mean value"),
					 errdetail("Row %d has x = %g and mean value %g.", i + 1, d.x[i], d.m[i])));
		d.log_m[i] = log(d.m[i]);
		d.log_x[i] = log(d.x[i]);
	}
	distinct_values(d.x, n1, &d.distinct_x);
	d.per_x = palloc(sizeof(double) * Max(d.distinct_x.count, 1));
	prior[0] = theta[0] = log(start[0]);
	prior[1] = theta[1] = log(start[1] - 1.0);
	prior[2] = theta[2] = log(start[2]);
	d.prior = prior;
	d.prior_weight = PG_ARGISNULL(4) ? 0.0 : PG_GETARG_FLOAT8(4);

	for (i = 0; i < 3; i++)
		theta[i] = Min(Max(theta[i], gg_bounds.lo[i]), gg_bounds.hi[i]);
	iterations = nelder_mead(gg_objective, &d, 3, &gg_bounds, theta, &value);
	for (i = 0; i < 3; i++)
		if (theta[i] < gg_bounds.lo[i] + 0.01 || theta[i] > gg_bounds.hi[i] - 0.01)
			at_bound = true;
	values[0] = Float8GetDatum(exp(theta[0]));
	values[1] = Float8GetDatum(1.0 + exp(theta[1]));
	values[2] = Float8GetDatum(exp(theta[2]));
	value = d.n > 0 ? gg_log_likelihood(theta, &d) : 0.0;
	values[3] = Float8GetDatum(value);
	nulls[3] = !isfinite(value);
	values[4] = Int32GetDatum(iterations);
	values[5] = BoolGetDatum(at_bound || !isfinite(value));
	PG_RETURN_DATUM(return_record(fcinfo, values, nulls));
}

/*
 * The time from now, in model units, at which one more purchase is
 * expected: where E[X(t) | x, t_x, T] reaches 1, found by bisection on a
 * logarithmic scale between limit * e^-16 and limit, to within 0.5%.  Negative when fewer than one
 * purchase is expected within limit.
 */
static double
time_to_next_purchase(double x, double t_x, double t_cal, const double *par, double limit)
{
	double		lo,
				hi;
	int			i;

	if (!(bgnbd_expected_purchases(limit, x, t_x, t_cal, par[0], par[1], par[2], par[3]) >= 1.0))
		return -1.0;
	lo = log(limit) - 16.0;
	hi = log(limit);
	for (i = 0; i < 60 && hi - lo > 5e-3; i++)
	{
		double		mid = 0.5 * (lo + hi);

		if (bgnbd_expected_purchases(exp(mid), x, t_x, t_cal,
									 par[0], par[1], par[2], par[3]) >= 1.0)
			hi = mid;
		else
			lo = mid;
	}
	return exp(hi);
}

/*
 * automation._score(x, t_x, t, mean_value, model float8[7], horizon,
 *                   month, monthly_discount)
 *   RETURNS (p_alive, expected_purchases, next_order, expected_spend, clv)
 *
 * Everything stored per customer, from the customer's statistics and the
 * model (r, alpha, a, b, p, q, gamma; the last three may be NULL when no
 * spend model exists).  horizon and month are in model units;
 * next_order is the time to the next expected purchase in model units, NULL
 * when less than one purchase is expected within 24 months; clv is the sum
 * over the next 12 months of the purchases expected in each month times the
 * expected spend, discounted monthly.  A value that cannot be computed is
 * NULL rather than NaN or infinity.
 */
Datum
automation_score(PG_FUNCTION_ARGS)
{
	double		x = PG_GETARG_FLOAT8(0),
				t_x = PG_GETARG_FLOAT8(1),
				t_cal = PG_GETARG_FLOAT8(2);
	double		m = PG_ARGISNULL(3) ? NAN : PG_GETARG_FLOAT8(3);
	ArrayType  *model = PG_GETARG_ARRAYTYPE_P(4);
	double		horizon = PG_GETARG_FLOAT8(5),
				month = PG_GETARG_FLOAT8(6),
				discount = PG_GETARG_FLOAT8(7);
	Datum	   *elems;
	bool	   *enulls;
	int			nelems,
				i;
	double		par[7];
	bool		has_spend = true;
	double		out[5];
	Datum		values[5];
	bool		nulls[5];

	deconstruct_array(model, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &enulls, &nelems);
	if (nelems != 7)
		elog(ERROR, "automation._score needs 7 model parameters");
	for (i = 0; i < 7; i++)
	{
		if (enulls[i])
		{
			if (i < 4)
				elog(ERROR, "automation._score needs the BG/NBD parameters");
			has_spend = false;
			par[i] = NAN;
		}
		else
			par[i] = DatumGetFloat8(elems[i]);
	}
	if (t_x > t_cal)
		t_x = t_cal;

	out[0] = bgnbd_p_alive(x, t_x, t_cal, par[0], par[1], par[2], par[3]);
	out[1] = bgnbd_expected_purchases(horizon, x, t_x, t_cal, par[0], par[1], par[2], par[3]);
	out[2] = time_to_next_purchase(x, t_x, t_cal, par, 24.0 * month);
	if (!(out[2] >= 0.0))
		out[2] = NAN;
	if (has_spend)
	{
		double		previous = 0.0;
		double		clv = 0.0;

		if (!isnan(m) && m < 0.0)
			m = 0.0;
		out[3] = gg_expected_spend(x, m, par[4], par[5], par[6]);
		for (i = 1; i <= 12; i++)
		{
			double		e = bgnbd_expected_purchases(i * month, x, t_x, t_cal,
													 par[0], par[1], par[2], par[3]);

			clv += (e - previous) * out[3] / pow(1.0 + discount, i);
			previous = e;
		}
		out[4] = clv;
	}
	else
		out[3] = out[4] = NAN;

	for (i = 0; i < 5; i++)
	{
		nulls[i] = !isfinite(out[i]);
		values[i] = Float8GetDatum(nulls[i] ? 0.0 : out[i]);
	}
	PG_RETURN_DATUM(return_record(fcinfo, values, nulls));
}

/*
 * automation._prediction_settings() RETURNS (time_unit, unit_seconds,
 * discount_rate, churn_risk_threshold, min_customers, refresh_minutes): the settings, read
 * through the library so that they exist even when it was not preloaded.
 */
Datum
automation_prediction_settings(PG_FUNCTION_ARGS)
{
	Datum		values[6];
	bool		nulls[6] = {false};

	values[0] = CStringGetTextDatum(unit_name(automation_prediction_time_unit));
	values[1] = Float8GetDatum(unit_seconds(automation_prediction_time_unit));
	values[2] = Float8GetDatum(automation_discount_rate);
	values[3] = Float8GetDatum(automation_churn_risk_threshold);
	values[4] = Int32GetDatum(automation_prediction_min_customers);
	values[5] = Int32GetDatum(automation_prediction_refresh);
	PG_RETURN_DATUM(return_record(fcinfo, values, nulls));
}

/*
 * One customer's purchase history while the orders stream past: the
 * distinct purchase days seen so far (unsorted; a customer has few), the
 * first and last of them, the value of the first day and of all days.
 */
typedef struct CustomerHistory
{
	Datum		key;			/* hash key: the customer, copied */
	DateADT		first_day;
	DateADT		last_day;
	int			ndays;
	int			capacity;
	DateADT    *days;
	double		first_value;
	double		total_value;
} CustomerHistory;

/* the customer key's hash and equality functions, for the dynahash callbacks */
static FmgrInfo *history_hash_fn;
static FmgrInfo *history_eq_fn;
static Oid	history_collation;

static uint32
history_hash(const void *key, Size keysize)
{
	return DatumGetUInt32(FunctionCall1Coll(history_hash_fn, history_collation,
											*(const Datum *) key));
}

static int
history_match(const void *key1, const void *key2, Size keysize)
{
	return DatumGetBool(FunctionCall2Coll(history_eq_fn, history_collation,
										  *(const Datum *) key1,
										  *(const Datum *) key2)) ? 0 : 1;
}

/*
 * A DestReceiver that folds each order into its customer's history as the
 * executor produces it: no tuple is copied or stored on the way.
 */
typedef struct HistoryReceiver
{
	DestReceiver pub;
	MemoryContext cxt;
	HTAB	   *histories;
	Oid			key_type;
	int16		key_len;
	bool		key_byval;
} HistoryReceiver;

static void
history_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	HistoryReceiver *r = (HistoryReceiver *) self;
	Form_pg_attribute attr = TupleDescAttr(typeinfo, 0);
	TypeCacheEntry *tce;
	HASHCTL		ctl;

	r->key_type = attr->atttypid;
	get_typlenbyval(r->key_type, &r->key_len, &r->key_byval);
	tce = lookup_type_cache(getBaseType(r->key_type),
							TYPECACHE_HASH_PROC_FINFO | TYPECACHE_EQ_OPR_FINFO);
	if (!OidIsValid(tce->hash_proc_finfo.fn_oid) || !OidIsValid(tce->eq_opr_finfo.fn_oid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("customer keys of type %s cannot be hashed", format_type_be(r->key_type))));
	history_hash_fn = &tce->hash_proc_finfo;
	history_eq_fn = &tce->eq_opr_finfo;
	history_collation = OidIsValid(attr->attcollation) ? attr->attcollation : DEFAULT_COLLATION_OID;
	ctl.keysize = sizeof(Datum);
	ctl.entrysize = sizeof(CustomerHistory);
	ctl.hash = history_hash;
	ctl.match = history_match;
	ctl.hcxt = r->cxt;
	r->histories = hash_create("customer histories", 65536, &ctl,
							   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/* Adds one order (customer, day, value) to its customer's history. */
static bool
history_receive(TupleTableSlot *slot, DestReceiver *self)
{
	HistoryReceiver *r = (HistoryReceiver *) self;
	Datum		key;
	DateADT		d;
	double		v;
	bool		found;
	CustomerHistory *h;
	MemoryContext old;
	int			k;

	slot_getallattrs(slot);
	if (slot->tts_isnull[0] || slot->tts_isnull[1])
		return true;
	key = slot->tts_values[0];
	d = DatumGetDateADT(slot->tts_values[1]);
	v = slot->tts_isnull[2] ? 0.0 : DatumGetFloat8(slot->tts_values[2]);

	old = MemoryContextSwitchTo(r->cxt);
	h = (CustomerHistory *) hash_search(r->histories, &key, HASH_ENTER, &found);
	if (!found)
	{
		h->key = datumCopy(key, r->key_byval, r->key_len);
		h->first_day = h->last_day = d;
		h->ndays = 1;
		h->capacity = 4;
		h->days = palloc(sizeof(DateADT) * h->capacity);
		h->days[0] = d;
		h->first_value = h->total_value = v;
		MemoryContextSwitchTo(old);
		return true;
	}
	h->total_value += v;
	if (d < h->first_day)
	{
		h->first_day = d;
		h->first_value = v;
	}
	else if (d == h->first_day)
		h->first_value += v;
	if (d > h->last_day)
		h->last_day = d;
	for (k = 0; k < h->ndays; k++)
		if (h->days[k] == d)
			break;
	if (k == h->ndays)
	{
		if (h->ndays == h->capacity)
		{
			h->capacity *= 2;
			h->days = repalloc(h->days, sizeof(DateADT) * h->capacity);
		}
		h->days[h->ndays++] = d;
	}
	MemoryContextSwitchTo(old);
	return true;
}

static void
history_shutdown(DestReceiver *self)
{
}

static void
history_destroy(DestReceiver *self)
{
}

/*
 * automation._order_statistics(as_of timestamptz, unit_seconds float8)
 *   RETURNS TABLE (customer_key text, x int, t_x float8, t float8,
 *                  mean_value float8, total_value float8)
 *
 * One read of the bound orders placed at or before as_of (only the counted
 * statuses when the binding names some), as the role that bound them.
 * Orders of one customer on one day (in automation.default_timezone) are
 * one purchase whose value is their sum.  Per customer: x = purchase days
 * - 1, t_x = days from the first to the last purchase day, t = time from
 * the start of the first purchase day to as_of (both in units of
 * unit_seconds), the mean value of the repeat purchases (NULL when x = 0)
 * and the value of all purchases.
 *
 * The executor hands the orders one by one to a DestReceiver that keeps a
 * hash table keyed by the customer key in its own type (hashed with the
 * type's default hash function), one small entry per customer: no tuple is
 * copied, and there is no intermediate grouping by customer and day, which
 * at ten million orders would spill to disk.
 */
Datum
automation_order_statistics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(0);
	double		unit = PG_GETARG_FLOAT8(1);
	char	   *schema,
			   *relname,
			   *customer,
			   *placed_at,
			   *total,
			   *status,
			   *bound_by;
	Datum		statuses = (Datum) 0;
	bool		has_statuses;
	Oid			placed_type;
	StringInfoData ts,
				day,
				query;
	char	   *tz;
	Oid			save_userid;
	int			save_sec;
	ParamListInfo params;
	SPIExecuteOptions options;
	HistoryReceiver receiver;
	MemoryContext per_query;
	MemoryContext histories_cxt;
	HTAB	   *histories = NULL;
	Oid			key_type = InvalidOid;
	Oid			key_out;
	bool		key_varlena;
	Datum		tz_text;
	int			ret;

	if (!(unit > 0.0))
		elog(ERROR, "unit_seconds must be positive");
	InitMaterializedSRF(fcinfo, 0);
	per_query = rsinfo->econtext->ecxt_per_query_memory;
	histories_cxt = AllocSetContextCreate(CurrentMemoryContext, "order statistics",
										  ALLOCSET_DEFAULT_SIZES);

	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));

	ret = SPI_execute("SELECT s.relation_schema::text, s.relation_name::text, "
					  "       s.columns ->> 'customer', s.columns ->> 'placed_at', "
					  "       s.columns ->> 'total', s.columns ->> 'status', s.bound_by::text, "
					  "       ARRAY(SELECT jsonb_array_elements_text(s.options -> 'counted_statuses')), "
					  "       s.options ? 'counted_statuses', "
					  "       (SELECT a.atttypid FROM pg_catalog.pg_attribute a "
					  "         WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', s.relation_schema, s.relation_name)) "
					  "           AND a.attname = s.columns ->> 'placed_at' AND NOT a.attisdropped) "
					  "  FROM automation.source s WHERE s.kind = 'orders'",
					  true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading automation.source failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no orders are bound"),
				 errdetail("Predictions are computed from the shop's orders."),
				 errhint("Bind them first with automation.bind_orders().")));
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		schema = SPI_getvalue(tup, desc, 1);
		relname = SPI_getvalue(tup, desc, 2);
		customer = SPI_getvalue(tup, desc, 3);
		placed_at = SPI_getvalue(tup, desc, 4);
		total = SPI_getvalue(tup, desc, 5);
		status = SPI_getvalue(tup, desc, 6);
		bound_by = SPI_getvalue(tup, desc, 7);
		d = SPI_getbinval(tup, desc, 8, &isnull);
		statuses = SPI_datumTransfer(d, false, -1);
		has_statuses = DatumGetBool(SPI_getbinval(tup, desc, 9, &isnull)) && status != NULL;
		d = SPI_getbinval(tup, desc, 10, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("the orders binding no longer matches relation %s.%s",
							quote_identifier(schema), quote_identifier(relname)),
					 errdetail("Its placed_at column \"%s\" or the relation itself is gone.", placed_at),
					 errhint("Bind the orders again with automation.bind_orders().")));
		placed_type = getBaseType(DatumGetObjectId(d));
	}

	/*
	 * The order's time as timestamptz, and its day in the default time zone.
	 * The zone is a literal rather than a parameter so that the planner
	 * resolves it once instead of once per order.
	 */
	tz = quote_literal_cstr(automation_default_timezone);
	initStringInfo(&ts);
	initStringInfo(&day);
	switch (placed_type)
	{
		case DATEOID:
			appendStringInfo(&ts, "(o.%s::timestamp AT TIME ZONE %s)", quote_identifier(placed_at), tz);
			appendStringInfo(&day, "o.%s::date", quote_identifier(placed_at));
			break;
		case TIMESTAMPOID:
			appendStringInfo(&ts, "(o.%s AT TIME ZONE %s)", quote_identifier(placed_at), tz);
			appendStringInfo(&day, "(%s AT TIME ZONE %s)::date", ts.data, tz);
			break;
		default:
			appendStringInfo(&ts, "o.%s::timestamptz", quote_identifier(placed_at));
			appendStringInfo(&day, "(%s AT TIME ZONE %s)::date", ts.data, tz);
			break;
	}

	initStringInfo(&query);
	/*
	 * The orders the profiles count: a customer, a time that is one (not
	 * -infinity), a total that is a number, at least 0 (NaN sorts above
	 * infinity).
	 */
	appendStringInfo(&query,
					 "SELECT o.%1$s, %2$s, o.%3$s::float8 FROM %4$s.%5$s o "
					 " WHERE o.%1$s IS NOT NULL AND %6$s <= $1 AND isfinite(%6$s) "
					 "   AND o.%3$s::float8 >= 0 AND o.%3$s::float8 < 'Infinity'::float8",
					 quote_identifier(customer), day.data, quote_identifier(total),
					 quote_identifier(schema), quote_identifier(relname),
					 ts.data);
	if (has_statuses)
		appendStringInfo(&query, " AND o.%s::text = ANY ($2)", quote_identifier(status));

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(get_role_oid(bound_by, false),
						   save_sec | SECURITY_LOCAL_USERID_CHANGE);

	params = makeParamList(2);
	params->params[0].value = TimestampTzGetDatum(as_of);
	params->params[0].ptype = TIMESTAMPTZOID;
	params->params[0].pflags = PARAM_FLAG_CONST;
	params->params[0].isnull = false;
	params->params[1].value = statuses;
	params->params[1].ptype = TEXTARRAYOID;
	params->params[1].pflags = PARAM_FLAG_CONST;
	params->params[1].isnull = false;
	memset(&receiver, 0, sizeof(receiver));
	receiver.pub.receiveSlot = history_receive;
	receiver.pub.rStartup = history_startup;
	receiver.pub.rShutdown = history_shutdown;
	receiver.pub.rDestroy = history_destroy;
	receiver.pub.mydest = DestNone;
	receiver.cxt = histories_cxt;
	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = true;
	options.dest = (DestReceiver *) &receiver;

	/* a SELECT whose rows go to a receiver of type DestNone reports SPI_OK_UTILITY */
	ret = SPI_execute_extended(query.data, &options);
	if (ret != SPI_OK_SELECT && ret != SPI_OK_UTILITY)
		elog(ERROR, "reading the orders failed: %s", SPI_result_code_string(ret));
	histories = receiver.histories;
	key_type = receiver.key_type;
	SetUserIdAndSecContext(save_userid, save_sec);

	if (histories != NULL)
	{
		HASH_SEQ_STATUS seq;
		CustomerHistory *h;

		getTypeOutputInfo(key_type, &key_out, &key_varlena);
		tz_text = CStringGetTextDatum(automation_default_timezone);
		hash_seq_init(&seq, histories);
		while ((h = (CustomerHistory *) hash_seq_search(&seq)) != NULL)
		{
			Datum		values[6];
			bool		nulls[6] = {false};
			TimestampTz day_start;
			int			x = h->ndays - 1;
			MemoryContext old;

			CHECK_FOR_INTERRUPTS();
			day_start = DatumGetTimestampTz(DirectFunctionCall2(timestamp_zone, tz_text,
																DirectFunctionCall1(date_timestamp,
																					DateADTGetDatum(h->first_day))));
			old = MemoryContextSwitchTo(per_query);
			values[0] = CStringGetTextDatum(OidOutputFunctionCall(key_out, h->key));
			values[1] = Int32GetDatum(x);
			values[2] = Float8GetDatum((double) (h->last_day - h->first_day) * 86400.0 / unit);
			values[3] = Float8GetDatum((double) (as_of - day_start) / USECS_PER_SEC / unit);
			if (x > 0)
				values[4] = Float8GetDatum((h->total_value - h->first_value) / x);
			else
				nulls[4] = true;
			values[5] = Float8GetDatum(h->total_value);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
			MemoryContextSwitchTo(old);
		}
	}

	SPI_finish();
	MemoryContextDelete(histories_cxt);
	return (Datum) 0;
}
