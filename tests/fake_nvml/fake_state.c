/* The fake NVML's state: mapped from FAKE_NVML_STATE (MAP_SHARED) or private, and the prologue
 * (count, block, inject) that every entry point runs first.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fake_state.h"

struct nvmlDevice_st fake_handles[FAKE_MAX_DEVICES];
int fake_init_count;
const char *const fake_function_names[FN_COUNT] = {
#define FAKE_NAME(name) #name,
    FAKE_FUNCTIONS(FAKE_NAME)
#undef FAKE_NAME
};
static fake_state_t *state;

void fake_reset_state(fake_state_t *s) {
    memset(s, 0, sizeof(*s));
    s->magic = FAKE_MAGIC;
    s->size = sizeof(*s);
    snprintf(s->driver_version, sizeof(s->driver_version), "%s", "000.00.00");
    for (unsigned int i = 0; i < FAKE_MAX_DEVICES; i++) {
        fake_device_t *d = &s->devices[i];
        snprintf(d->name, sizeof(d->name), "%s", "Fake GPU");
        snprintf(d->uuid, sizeof(d->uuid), "GPU-00000000-0000-0000-0000-%012u", i);
        snprintf(d->pci_bus_id, sizeof(d->pci_bus_id), "00000000:%02X:00.0", i + 1);
        d->pstate = NVML_PSTATE_0;
        d->supported_events = nvmlEventTypeXidCriticalError;
        for (int t = 0; t < NVML_TEMPERATURE_THRESHOLD_COUNT; t++) d->threshold_rc[t] = NVML_ERROR_NOT_SUPPORTED;
        for (int f = 0; f < FAKE_FIELD_IDS; f++) d->fields[f].rc = NVML_ERROR_NOT_SUPPORTED;
    }
}

static int map_file(const char *path, fake_state_t **out) {
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    if (fd < 0) return -1;
    flock(fd, LOCK_EX); /* two processes attaching at once must not both initialise */
    struct stat st;
    int fresh = fstat(fd, &st) == 0 && st.st_size == 0;
    if (fresh && ftruncate(fd, (off_t)sizeof(fake_state_t)) != 0) fresh = -1;
    void *mem = fresh < 0 ? MAP_FAILED
                          : mmap(NULL, sizeof(fake_state_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mem != MAP_FAILED && fresh) fake_reset_state(mem);
    flock(fd, LOCK_UN);
    close(fd);
    if (mem == MAP_FAILED) return -1;
    fake_state_t *s = mem;
    if (s->magic != FAKE_MAGIC || s->size != sizeof(fake_state_t)) {
        munmap(mem, sizeof(fake_state_t));
        return -2;
    }
    *out = s;
    return 0;
}

/* Point this process at a state file (or, with NULL/"", at fresh private memory). The previous
 * mapping is left in place: a thread still inside a call must not fault. */
int fake_attach(const char *path) {
    fake_state_t *next = NULL;
    if (path == NULL || path[0] == '\0') {
        void *mem = mmap(NULL, sizeof(fake_state_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) return -1;
        fake_reset_state(mem);
        next = mem;
    } else {
        int rc = map_file(path, &next);
        if (rc != 0) return rc;
    }
    __atomic_store_n(&state, next, __ATOMIC_RELEASE);
    fake_init_count = 0;
    return 0;
}

__attribute__((constructor)) static void fake_load(void) {
    const char *path = getenv("FAKE_NVML_STATE");
    int rc = fake_attach(path);
    if (rc != 0) {
        fprintf(stderr, "fake libnvidia-ml: cannot use state file %s (error %d)\n", path, rc);
        fake_attach(NULL);
    }
}

fake_state_t *fake_state(void) { return __atomic_load_n(&state, __ATOMIC_ACQUIRE); }

unsigned long long fake_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000ULL + (unsigned long long)ts.tv_nsec / 1000000ULL;
}

void fake_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void fake_lock_ring(fake_state_t *s) {
    while (__atomic_test_and_set(&s->lock, __ATOMIC_ACQUIRE)) sched_yield();
}

void fake_unlock_ring(fake_state_t *s) { __atomic_clear(&s->lock, __ATOMIC_RELEASE); }

nvmlReturn_t fake_enter(int row, fake_function_t fn) {
    fake_state_t *s = fake_state();
    __atomic_fetch_add(&s->calls[row][fn], 1ULL, __ATOMIC_RELAXED);
    unsigned long long started = fake_now_ms();
    while (__atomic_load_n(&s->blocked[row][fn], __ATOMIC_ACQUIRE) && fake_now_ms() - started < FAKE_BLOCK_LIMIT_MS)
        fake_sleep_ms(1);
    int rc = __atomic_load_n(&s->global_rc, __ATOMIC_ACQUIRE);
    if (rc != NVML_SUCCESS) return (nvmlReturn_t)rc;
    return (nvmlReturn_t)__atomic_load_n(&s->function_rc[row][fn], __ATOMIC_ACQUIRE);
}

nvmlReturn_t fake_enter_global(fake_function_t fn) {
    nvmlReturn_t rc = fake_enter(FAKE_GLOBAL_ROW, fn);
    if (rc == NVML_SUCCESS && fake_init_count == 0) return NVML_ERROR_UNINITIALIZED;
    return rc;
}

nvmlReturn_t fake_enter_device(nvmlDevice_t device, fake_function_t fn, fake_device_t **out) {
    if (device < fake_handles || device >= fake_handles + FAKE_MAX_DEVICES) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t rc = fake_enter((int)device->index, fn);
    if (rc != NVML_SUCCESS) return rc;
    if (fake_init_count == 0) return NVML_ERROR_UNINITIALIZED;
    fake_state_t *s = fake_state();
    if (device->index >= s->device_count) return NVML_ERROR_INVALID_ARGUMENT;
    fake_device_t *d = &s->devices[device->index];
    rc = (nvmlReturn_t)__atomic_load_n(&d->device_rc, __ATOMIC_ACQUIRE);
    if (rc != NVML_SUCCESS) return rc;
    *out = d;
    return NVML_SUCCESS;
}
