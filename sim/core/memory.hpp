// Large-array helper: reserve a vector and ask the kernel for transparent huge pages on it,
// so multi-hundred-MB programs and traces take 512x fewer page faults and TLB misses.
// Not an allocator: it only advises; where THP is off or unsupported it changes nothing.
#pragma once

#include <cstddef>
#include <vector>

namespace bubblesim {

/// madvise(MADV_HUGEPAGE) on the whole 2 MiB pages inside [p, p + bytes); no-op for small ranges.
void advise_huge_pages(const void* p, size_t bytes);

/// v.reserve(n), then advise_huge_pages on the new capacity (before its pages are touched).
template <class T>
void reserve_huge(std::vector<T>& v, size_t n) {
  if (n <= v.capacity()) return;
  v.reserve(n);
  advise_huge_pages(v.data(), v.capacity() * sizeof(T));
}

/// v = n copies of `value`, with huge pages advised before the copies are written.
template <class T>
void assign_huge(std::vector<T>& v, size_t n, const T& value) {
  v.clear();
  reserve_huge(v, n);
  v.assign(n, value);
}

}  // namespace bubblesim
