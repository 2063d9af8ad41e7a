/*-------------------------------------------------------------------------
 *
 * prediction.h
 *	  BG/NBD and Gamma-Gamma customer models: the formulas, the fit and the
 *	  settings they read.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PREDICTION_H
#define PREDICTION_H

/* values of automation.prediction_time_unit */
typedef enum PredictionTimeUnit
{
	PREDICTION_UNIT_DAYS,
	PREDICTION_UNIT_WEEKS,
	PREDICTION_UNIT_MONTHS
} PredictionTimeUnit;

/* settings (defined in automation.c) */
extern int	automation_prediction_time_unit;
extern double automation_discount_rate;
extern double automation_churn_risk_threshold;
extern int	automation_prediction_min_customers;
extern int	automation_prediction_refresh;


/* Gauss hypergeometric function 2F1(a, b; c; z) for real z < 1 (hyp2f1.c) */
extern double prediction_hyp2f1(double a, double b, double c, double z);
extern double hyp2f1_log_scaled(double A, double B, double C, double z);

/* BG/NBD formulas (Fader, Hardie & Lee 2005) */
extern double bgnbd_p_alive(double x, double t_x, double t_cal,
							double r, double alpha, double a, double b);
extern double bgnbd_expected_purchases(double t, double x, double t_x, double t_cal,
									   double r, double alpha, double a, double b);

/* Gamma-Gamma conditional expected spend per order */
extern double gg_expected_spend(double x, double mean_value,
								double p, double q, double gamma);

#endif							/* PREDICTION_H */
