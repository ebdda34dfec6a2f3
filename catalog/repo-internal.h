/* SPDX-License-Identifier: MIT */
/* Between repo.c (the object) and repo-scan.c (filling it from disk). */
#ifndef SENDENSE_CATALOG_REPO_INTERNAL_H
#define SENDENSE_CATALOG_REPO_INTERNAL_H

#include "catalog/repo.h"

/* repo.c */
/* Record a problem; -ENOMEM is the only failure. */
int repo_problem(struct cat_repo *repo, enum cat_problem_kind kind,
                 const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* repo-scan.c */
/* Fill repo (root set, nothing else) from disk. */
int repo_scan(struct cat_repo *repo, struct sd_error *err);

#endif
