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

/* automation.prune_batch: archived messages pruned per tick at most (0: all due) */
extern int	automation_prune_batch;

#endif							/* AUTOMATION_OUTBOX_H */
