/*-------------------------------------------------------------------------
 *
 * outbox.h
 *	  Settings of the outbox (outbox.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTOMATION_OUTBOX_H
#define AUTOMATION_OUTBOX_H

/* automation.max_attempts: handouts before a failing message is dead */
extern int	automation_max_attempts;

/* automation.retention, in minutes: how long the archive keeps finished messages */
extern int	automation_retention;

#endif							/* AUTOMATION_OUTBOX_H */
