/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "server/name-index.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t hash_name(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;        /* FNV-1a */

    while (*s)
        h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
    return (size_t)(h ^ (h >> 32));
}

static size_t find_pos(const struct name_index *ni, const char *key)
{
    size_t mask = ni->cap - 1, i = hash_name(key) & mask;

    while (ni->slots[i].key && strcmp(ni->slots[i].key, key) != 0)
        i = (i + 1) & mask;
    return i;
}

static int grow(struct name_index *ni)
{
    size_t cap = ni->cap ? 2 * ni->cap : 64;
    struct name_index old = *ni;

    ni->slots = calloc(cap, sizeof(*ni->slots));
    if (!ni->slots) {
        *ni = old;
        return -ENOMEM;
    }
    ni->cap = cap;
    ni->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].key)
            ni->slots[find_pos(ni, old.slots[i].key)] = old.slots[i], ni->n++;
    free(old.slots);
    return 0;
}

int name_index_put(struct name_index *ni, const char *key, size_t value)
{
    size_t i;

    if (ni->cap) {
        i = find_pos(ni, key);
        if (ni->slots[i].key) {          /* update: never allocates */
            ni->slots[i] = (struct name_index_entry){ key, value };
            return 0;
        }
    }
    /* Keep the load under one half: probes stay short. */
    if (2 * (ni->n + 1) > ni->cap && grow(ni) < 0)
        return -ENOMEM;
    i = find_pos(ni, key);
    ni->n++;
    ni->slots[i] = (struct name_index_entry){ key, value };
    return 0;
}

bool name_index_get(const struct name_index *ni, const char *key,
                    size_t *value)
{
    size_t i;

    if (!ni->cap)
        return false;
    i = find_pos(ni, key);
    if (!ni->slots[i].key)
        return false;
    *value = ni->slots[i].value;
    return true;
}

void name_index_remove(struct name_index *ni, const char *key)
{
    size_t mask = ni->cap - 1, i, j;

    if (!ni->cap)
        return;
    i = find_pos(ni, key);
    if (!ni->slots[i].key)
        return;
    ni->slots[i].key = NULL;
    ni->n--;
    /* Backward shift: move later entries of the run into the hole when
     * their home position does not lie between the hole and them. */
    for (j = (i + 1) & mask; ni->slots[j].key; j = (j + 1) & mask) {
        size_t home = hash_name(ni->slots[j].key) & mask;
        bool stays = i <= j ? (i < home && home <= j)
                            : (i < home || home <= j);
        if (stays)
            continue;
        ni->slots[i] = ni->slots[j];
        ni->slots[j].key = NULL;
        i = j;
    }
}

void name_index_free(struct name_index *ni)
{
    free(ni->slots);
    ni->slots = NULL;
    ni->cap = ni->n = 0;
}
