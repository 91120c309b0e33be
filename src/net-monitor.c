/* SPDX-License-Identifier: MIT */

#include <errno.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "log.h"
#include "net-monitor.h"

#define MAX_READS_PER_WAKEUP 16

struct net_monitor {
        int fd;
        sd_event *event;
        sd_event_source *io, *settle;
        uint64_t settle_usec;
        net_changed_fn cb;
        void *userdata;
};

static int on_settled(sd_event_source *es, uint64_t usec, void *userdata) {
        struct net_monitor *m = userdata;

        m->settle = sd_event_source_disable_unref(m->settle);
        log_debug("network configuration changed: checking sessions");
        m->cb(m->userdata);
        return 0;
}

/* Is this message about something other than loopback? */
static bool relevant(const struct nlmsghdr *h) {
        switch (h->nlmsg_type) {
        case RTM_NEWLINK:
        case RTM_DELLINK: {
                const struct ifinfomsg *ifi = NLMSG_DATA(h);

                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*ifi)))
                        return false;
                return !(ifi->ifi_flags & IFF_LOOPBACK);
        }
        case RTM_NEWADDR:
        case RTM_DELADDR: {
                const struct ifaddrmsg *ifa = NLMSG_DATA(h);

                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*ifa)))
                        return false;
                return ifa->ifa_index != if_nametoindex("lo");
        }
        case RTM_NEWROUTE:
        case RTM_DELROUTE: {
                const struct rtmsg *rt = NLMSG_DATA(h);

                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*rt)))
                        return false;
                return rt->rtm_table == RT_TABLE_MAIN;
        }
        default:
                return false;
        }
}

static int on_netlink(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct net_monitor *m = userdata;
        char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
        bool changed = false;

        for (int i = 0; i < MAX_READS_PER_WAKEUP; i++) {
                ssize_t n = recv(m->fd, buf, sizeof(buf), MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == ENOBUFS)   /* we missed some: assume a change */
                                changed = true;
                        break;
                }
                for (struct nlmsghdr *h = (struct nlmsghdr *) buf; NLMSG_OK(h, (size_t) n); h = NLMSG_NEXT(h, n))
                        if (relevant(h))
                                changed = true;
        }
        if (!changed)
                return 0;
        /* (re)start the settle timer: one check after a burst of changes */
        m->settle = sd_event_source_disable_unref(m->settle);
        if (sd_event_add_time_relative(m->event, &m->settle, CLOCK_MONOTONIC, m->settle_usec, 0, on_settled, m) < 0)
                m->cb(m->userdata);
        return 0;
}

int net_monitor_new(sd_event *e, uint64_t settle_usec, net_changed_fn cb, void *userdata, struct net_monitor **ret) {
        struct sockaddr_nl addr = {
                .nl_family = AF_NETLINK,
                .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE |
                             RTMGRP_IPV6_ROUTE,
        };
        struct net_monitor *m;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(e);
        m->settle_usec = settle_usec;
        m->cb = cb;
        m->userdata = userdata;
        m->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
        if (m->fd < 0) {
                r = -errno;
                goto fail;
        }
        if (bind(m->fd, (struct sockaddr *) &addr, sizeof(addr)) < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(e, &m->io, m->fd, EPOLLIN, on_netlink, m);
        if (r < 0)
                goto fail;
        *ret = m;
        return 0;
fail:
        net_monitor_free(m);
        return r;
}

struct net_monitor *net_monitor_free(struct net_monitor *m) {
        if (!m)
                return NULL;
        sd_event_source_disable_unref(m->io);
        sd_event_source_disable_unref(m->settle);
        if (m->fd >= 0)
                close(m->fd);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}
