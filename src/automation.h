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

/* settings (automation.c) */
extern char *automation_default_timezone;

#endif							/* AUTOMATION_H */
