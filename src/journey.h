/*-------------------------------------------------------------------------
 *
 * journey.h
 *	  The journeys in C (journey.c): a message's payload, a cart's lines, and
 *	  the triggers' contexts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTOMATION_JOURNEY_H
#define AUTOMATION_JOURNEY_H

#include "fmgr.h"

extern Datum automation_message_payload(PG_FUNCTION_ARGS);
extern Datum automation_cart_lines_add(PG_FUNCTION_ARGS);
extern Datum automation_cart_lines_final(PG_FUNCTION_ARGS);
extern Datum automation_object(PG_FUNCTION_ARGS);

#endif							/* AUTOMATION_JOURNEY_H */
