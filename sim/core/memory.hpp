// Large-array helper: reserve a vector and ask the kernel for transparent huge pages on it,
// so multi-hundred-MB programs and traces take 512x fewer page faults and TLB misses.
// Not an allocator: it only advises; where THP is off or unsupported it changes nothing.
#pragma once

#include <algorithm>
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

/// Makes room for `more` elements, doubling the capacity with huge pages advised, for arrays
/// that grow one push at a time to hundreds of MB (a Program's ops, edges and transfers).
template <class T>
void grow_huge(std::vector<T>& v, size_t more) {
  if (v.size() + more <= v.capacity()) return;
  reserve_huge(v, std::max(v.size() + more, 2 * v.capacity()));
}

/// v = n copies of `value`, with huge pages advised before the copies are written.
template <class T>
void assign_huge(std::vector<T>& v, size_t n, const T& value) {
  v.clear();
  reserve_huge(v, n);
  v.assign(n, value);
}

}  // namespace bubblesim
