/*-------------------------------------------------------------------------
 *
 * journey.h
 *	  The journeys' steps stage in C (journey.c): a message's payload.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTOMATION_JOURNEY_H
#define AUTOMATION_JOURNEY_H

#include "fmgr.h"

extern Datum automation_message_payload(PG_FUNCTION_ARGS);

#endif							/* AUTOMATION_JOURNEY_H */
