// Clang's thread-safety analysis attributes (-Wthread-safety), as macros
// that vanish under other compilers. They turn the lock rules written in
// the headers' comments into contracts the compiler checks:
//  - KVFS_GUARDED_BY(mu): a member read or written only with mu held;
//  - KVFS_REQUIRES(mu): a function called only with mu held;
//  - KVFS_EXCLUDES(mu): a function called only without mu (it takes it);
//  - KVFS_ACQUIRE/KVFS_RELEASE: a function that takes or drops a lock;
//  - KVFS_CAPABILITY / KVFS_SCOPED_CAPABILITY: a lock type, a lock holder.
// See adapters/mutex.h for the annotated lock types; CI builds with clang
// and -Werror=thread-safety (packaging/thread-safety-check.sh).
#pragma once

#if defined(__clang__)
#define KVFS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define KVFS_THREAD_ANNOTATION(x)
#endif

#define KVFS_CAPABILITY(name) KVFS_THREAD_ANNOTATION(capability(name))
#define KVFS_SCOPED_CAPABILITY KVFS_THREAD_ANNOTATION(scoped_lockable)
#define KVFS_GUARDED_BY(x) KVFS_THREAD_ANNOTATION(guarded_by(x))
#define KVFS_PT_GUARDED_BY(x) KVFS_THREAD_ANNOTATION(pt_guarded_by(x))
#define KVFS_ACQUIRED_BEFORE(...) KVFS_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define KVFS_ACQUIRED_AFTER(...) KVFS_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define KVFS_REQUIRES(...) KVFS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define KVFS_ACQUIRE(...) KVFS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define KVFS_RELEASE(...) KVFS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define KVFS_TRY_ACQUIRE(...) KVFS_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define KVFS_EXCLUDES(...) KVFS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define KVFS_RETURN_CAPABILITY(x) KVFS_THREAD_ANNOTATION(lock_returned(x))
#define KVFS_NO_THREAD_SAFETY_ANALYSIS KVFS_THREAD_ANNOTATION(no_thread_safety_analysis)
