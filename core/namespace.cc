#include "core/namespace.h"

#include <sys/stat.h>

#include <vector>

namespace kvfs {

Namespace::Namespace() {
  auto root = std::make_unique<Inode>();
  root->ino = kRootIno;
  root->is_dir = true;
  root->attr.mode = S_IFDIR | 0755;
  root->dir = std::make_unique<Directory>();
  root_ = root.get();
  inodes_.emplace(kRootIno, std::move(root));
}

Inode* Namespace::Get(uint64_t ino) const {
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second.get();
}

Inode* Namespace::Child(const Inode* dir, std::string_view name) const {
  if (!dir || !dir->dir) return nullptr;
  auto it = dir->dir->by_name.find(std::string(name));
  return it == dir->dir->by_name.end() ? nullptr : it->second;
}

Inode* Namespace::NewInode(bool is_dir, const Attributes& attr) {
  auto inode = std::make_unique<Inode>();
  inode->ino = next_ino_++;
  inode->is_dir = is_dir;
  inode->attr = attr;
  if (is_dir) inode->dir = std::make_unique<Directory>();
  Inode* raw = inode.get();
  inodes_.emplace(raw->ino, std::move(inode));
  return raw;
}

void Namespace::Attach(Inode* dir, Inode* child, std::string name) {
  child->parent = dir;
  child->name = std::move(name);
  child->dir_seq = dir->dir->next_seq++;
  dir->dir->by_name[child->name] = child;
  dir->dir->by_seq[child->dir_seq] = child;
  if (child->visible()) dir->dir->visible_entries++;
}

void Namespace::Detach(Inode* child) {
  Inode* dir = child->parent;
  if (!dir) return;
  dir->dir->by_name.erase(child->name);
  dir->dir->by_seq.erase(child->dir_seq);
  if (child->visible()) dir->dir->visible_entries--;
  child->parent = nullptr;
}

void Namespace::SetVisible(Inode* child, bool was_visible) {
  if (!child->parent || was_visible == child->visible()) return;
  if (child->visible()) child->parent->dir->visible_entries++;
  else child->parent->dir->visible_entries--;
}

void Namespace::Reap(Inode* inode) {
  if (!inode || inode->ino == kRootIno || inode->linked()) return;
  if (inode->nlookup > 0 || inode->open_handles > 0 || inode->committing) return;
  if (inode->dir) {
    // An unlinked directory is empty (rmdir) or was replaced by rename; detach what is left.
    std::vector<Inode*> children;
    for (auto& [name, c] : inode->dir->by_name) children.push_back(c);
    for (Inode* c : children) {
      Detach(c);
      Reap(c);
    }
  }
  inodes_.erase(inode->ino);
}

std::string Namespace::KeyOf(const Inode* inode) const {
  std::vector<const std::string*> parts;
  for (const Inode* i = inode; i && i->ino != kRootIno; i = i->parent) parts.push_back(&i->name);
  std::string key;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!key.empty()) key += '/';
    key += **it;
  }
  return key;
}

bool Namespace::IsAncestor(const Inode* maybe_ancestor, const Inode* inode) const {
  for (const Inode* i = inode; i; i = i->parent) {
    if (i == maybe_ancestor) return true;
  }
  return false;
}

}  // namespace kvfs
