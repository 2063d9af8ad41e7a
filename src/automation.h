/*-------------------------------------------------------------------------
 *
 * automation.h
 *	  Settings and entry points shared by the modules of the automation
 *	  extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTOMATION_H
#define AUTOMATION_H

#include "pgtime.h"

/* settings (automation.c) */
extern char *automation_default_timezone;

/* a customer's time zone value as a zone, or NULL (automation.c) */
extern pg_tz *automation_zone(const char *name);

/* profile and segment settings (automation.c) */
extern double automation_points_per_unit;
extern double automation_vip_threshold;
extern double automation_vip_gold_threshold;
extern double automation_lapsing_factor;
extern int	automation_lapsing_min_days;
extern int	automation_lost_days;
extern int	automation_loyal_orders;

/* segment evaluation (automation.c) */
extern int	automation_segment_timeout;

/* related products settings (automation.c) */
extern int	automation_related_refresh_interval;
extern int	automation_related_min_customers;

#endif							/* AUTOMATION_H */
