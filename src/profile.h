/*-------------------------------------------------------------------------
 *
 * profile.h
 *	  The profile pass (profile.c): automation._profile_pass(), and the
 *	  counts and RFM thresholds of its last run.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTOMATION_PROFILE_H
#define AUTOMATION_PROFILE_H

#include "fmgr.h"

extern Datum automation_profile_pass(PG_FUNCTION_ARGS);
extern Datum automation_profile_pass_counts(PG_FUNCTION_ARGS);
extern Datum automation_profile_pass_thresholds(PG_FUNCTION_ARGS);

#endif							/* AUTOMATION_PROFILE_H */
