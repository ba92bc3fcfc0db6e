// System shared memory: regions pinned for the GPUs when the server slices them, unpinned only
// after the last request using the region is done (and before it is unmapped).
#include "server/shm.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

namespace tessera::server {
namespace {

class ShmKey {
 public:
  explicit ShmKey(size_t bytes) : key_("/tessera_shm_test_" + std::to_string(::getpid())) {
    const int fd = shm_open(key_.c_str(), O_CREAT | O_RDWR, 0600);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(ftruncate(fd, static_cast<off_t>(bytes)), 0);
    close(fd);
  }
  ~ShmKey() { shm_unlink(key_.c_str()); }
  const std::string& key() const { return key_; }

 private:
  std::string key_;
};

TEST(SystemShm, RegionsArePinnedAndUnpinnedAfterTheirLastUser) {
  ShmKey key(1 << 16);
  int pins = 0, unpins = 0;
  size_t pinned_bytes = 0;
  SystemShmRegistry reg;
  reg.set_pinner([&](void* p, size_t bytes) -> Result<std::shared_ptr<void>> {
    ++pins;
    pinned_bytes = bytes;
    return std::shared_ptr<void>(p, [&](void*) { ++unpins; });
  });
  ASSERT_TRUE(reg.Register("r", key.key(), 4096, 8192).ok());
  EXPECT_EQ(pins, 1);
  EXPECT_EQ(pinned_bytes, 8192u);  // the mapping: page-aligned offset, no lead
  auto slice = reg.Slice("r", 16, 64);
  ASSERT_TRUE(slice.ok());
  reg.Unregister("r");
  EXPECT_EQ(unpins, 0) << "a request still holds the region";
  slice->holder.reset();
  EXPECT_EQ(unpins, 1);
}

TEST(SystemShm, ARegionThatCannotBePinnedStillRegisters) {
  ShmKey key(4096);
  SystemShmRegistry reg;
  reg.set_pinner([](void*, size_t) -> Result<std::shared_ptr<void>> {
    return Status::Unavailable("cudaHostRegister: out of memory");
  });
  ASSERT_TRUE(reg.Register("r", key.key(), 0, 4096).ok());
  EXPECT_TRUE(reg.Slice("r", 0, 4096).ok());
}

}  // namespace
}  // namespace tessera::server
