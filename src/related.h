/*-------------------------------------------------------------------------
 *
 * related.h
 *	  Related products (related.c): automation._related_pass() and the
 *	  counts of its last run.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTOMATION_RELATED_H
#define AUTOMATION_RELATED_H

#include "fmgr.h"

extern Datum automation_related_pass(PG_FUNCTION_ARGS);
extern Datum automation_related_pass_counts(PG_FUNCTION_ARGS);

#endif							/* AUTOMATION_RELATED_H */
