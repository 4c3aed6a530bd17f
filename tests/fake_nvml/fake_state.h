/* Shared by the fake libnvidia-ml.so.1's translation units: the state layout and the helpers
 * every entry point goes through. The layout is identical in the full and old-driver builds, so a
 * process with either build can steer the same state file.
 */
#ifndef FAKE_NVML_STATE_H
#define FAKE_NVML_STATE_H

#include "nvml.h"

#define FAKE_INTERNAL __attribute__((visibility("hidden")))

#define FAKE_MAX_DEVICES 16
#define FAKE_GLOBAL_ROW FAKE_MAX_DEVICES /* counters and injections of calls naming no device */
#define FAKE_ROWS (FAKE_MAX_DEVICES + 1)
#define FAKE_FIELD_IDS 320 /* above NVML_FI_MAX (310) of the header we build against */
#define FAKE_XID_CAPACITY 4096 /* a storm overwrites the oldest events, as a driver's queue does */
#define FAKE_MAGIC 0x4c4d564e454b4146ULL /* "FAKENVML" */
#define FAKE_BLOCK_LIMIT_MS 60000 /* a block a test forgot to release must not hang CI forever */

/* Every entry point the fake counts, injects failures into and can block; names are C symbols. */
#define FAKE_FUNCTIONS(X)                                                                        \
    X(nvmlInitWithFlags) X(nvmlShutdown) X(nvmlSystemGetDriverVersion) X(nvmlDeviceGetCount_v2)  \
    X(nvmlDeviceGetHandleByIndex_v2) X(nvmlDeviceGetName) X(nvmlDeviceGetUUID)                   \
    X(nvmlDeviceGetPciInfo_v3) X(nvmlDeviceGetTemperature) X(nvmlDeviceGetTemperatureThreshold)  \
    X(nvmlDeviceGetMarginTemperature) X(nvmlDeviceGetFieldValues) X(nvmlDeviceGetPowerUsage)     \
    X(nvmlDeviceGetEnforcedPowerLimit) X(nvmlDeviceGetPowerManagementDefaultLimit)               \
    X(nvmlDeviceGetPowerManagementLimitConstraints) X(nvmlDeviceGetTotalEnergyConsumption)       \
    X(nvmlDeviceGetUtilizationRates) X(nvmlDeviceGetMemoryInfo) X(nvmlDeviceGetClockInfo)        \
    X(nvmlDeviceGetMaxClockInfo) X(nvmlDeviceGetCurrentClocksEventReasons)                       \
    X(nvmlDeviceGetCurrentClocksThrottleReasons) X(nvmlDeviceGetPerformanceState)                \
    X(nvmlDeviceGetViolationStatus) X(nvmlEventSetCreate) X(nvmlDeviceRegisterEvents)            \
    X(nvmlEventSetWait_v2) X(nvmlEventSetFree)

typedef enum {
#define FAKE_ENUM(name) FN_##name,
    FAKE_FUNCTIONS(FAKE_ENUM)
#undef FAKE_ENUM
        FN_COUNT
} fake_function_t;

typedef struct {
    int rc; /* what the field answers; NOT_SUPPORTED until a test sets a value */
    int value_type;
    nvmlValue_t value;
    unsigned long long requests; /* how often a caller asked for it */
} fake_field_t;

typedef struct {
    char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
    char pci_bus_id[NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE];
    int device_rc; /* every call on this device fails with it, e.g. GPU_IS_LOST */
    unsigned int temperature_c;
    int margin_c;
    unsigned int thresholds_c[NVML_TEMPERATURE_THRESHOLD_COUNT];
    int threshold_rc[NVML_TEMPERATURE_THRESHOLD_COUNT];
    unsigned int power_mw, enforced_limit_mw, default_limit_mw, min_limit_mw, max_limit_mw;
    unsigned long long energy_mj;
    nvmlUtilization_t utilization;
    nvmlMemory_t memory;
    unsigned int clock_mhz[NVML_CLOCK_COUNT];
    unsigned int max_clock_mhz[NVML_CLOCK_COUNT];
    unsigned long long clock_event_reasons;
    int pstate;
    unsigned long long violation_ns[NVML_PERF_POLICY_COUNT];
    unsigned long long supported_events;
    fake_field_t fields[FAKE_FIELD_IDS];
} fake_device_t;

typedef struct {
    unsigned int device;
    unsigned long long xid;
} fake_xid_t;

typedef struct {
    unsigned long long magic;
    unsigned long long size; /* sizeof(fake_state_t): both builds must agree on the layout */
    unsigned char lock;      /* spinlock over the XID ring, shared across processes */
    unsigned int device_count;
    int init_rc;
    int global_rc; /* every call fails with it, as when the driver is unloaded */
    char driver_version[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE];
    int function_rc[FAKE_ROWS][FN_COUNT];
    int blocked[FAKE_ROWS][FN_COUNT];
    unsigned long long calls[FAKE_ROWS][FN_COUNT];
    unsigned long long xids_written; /* ever injected; slot = count % capacity */
    fake_xid_t xids[FAKE_XID_CAPACITY];
    fake_device_t devices[FAKE_MAX_DEVICES];
} fake_state_t;

struct nvmlDevice_st {
    unsigned int index;
};

struct nvmlEventSet_st {
    unsigned long long masks[FAKE_MAX_DEVICES]; /* event types registered per device */
    unsigned long long cursor;                  /* next XID slot this set has not delivered */
};

/* Process-local: handles are pointers into this process, and NVML init is per process. */
FAKE_INTERNAL extern struct nvmlDevice_st fake_handles[FAKE_MAX_DEVICES];
FAKE_INTERNAL extern int fake_init_count;
FAKE_INTERNAL extern const char *const fake_function_names[FN_COUNT];

FAKE_INTERNAL fake_state_t *fake_state(void);
FAKE_INTERNAL void fake_reset_state(fake_state_t *s);
FAKE_INTERNAL unsigned long long fake_now_ms(void);
FAKE_INTERNAL void fake_sleep_ms(long ms);
FAKE_INTERNAL void fake_lock_ring(fake_state_t *s);
FAKE_INTERNAL void fake_unlock_ring(fake_state_t *s);
/* The prologue of every entry point: count, wait while blocked, then answer injected failures. */
FAKE_INTERNAL nvmlReturn_t fake_enter(int row, fake_function_t fn);
FAKE_INTERNAL nvmlReturn_t fake_enter_global(fake_function_t fn);
FAKE_INTERNAL nvmlReturn_t fake_enter_device(nvmlDevice_t device, fake_function_t fn, fake_device_t **out);

#endif
