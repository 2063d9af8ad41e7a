/*-------------------------------------------------------------------------
 *
 * segment.h
 *	  Checking and evaluating segment predicates (segment.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTOMATION_SEGMENT_H
#define AUTOMATION_SEGMENT_H

#include "fmgr.h"

extern Datum automation_check_predicate(PG_FUNCTION_ARGS);
extern Datum automation_select_as(PG_FUNCTION_ARGS);

#endif							/* AUTOMATION_SEGMENT_H */
