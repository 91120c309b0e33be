/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * logind's PrepareForSleep on the system bus: called with true before the
 * machine sleeps and false after it resumed. Without a system bus or logind
 * the monitor is simply inactive (one debug line), never an error.
 */

#include <stdbool.h>
#include <systemd/sd-event.h>

struct sleep_monitor;

typedef void (*sleep_fn)(bool going_to_sleep, void *userdata);

/* Returns 0 and a monitor (possibly inactive), or -ENOMEM. */
int sleep_monitor_new(sd_event *e, sleep_fn cb, void *userdata, struct sleep_monitor **ret);
struct sleep_monitor *sleep_monitor_free(struct sleep_monitor *m);
bool sleep_monitor_active(const struct sleep_monitor *m);
