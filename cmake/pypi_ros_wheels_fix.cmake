# Work-around for ROS 2 interface builds against the PyPI "ros-*" wheels.
#
# The wheels were built in a manylinux container, and the CMake export files they ship give some
# imported targets (e.g. std_msgs::std_msgs__rosidl_generator_py) INTERFACE_INCLUDE_DIRECTORIES
# that only existed there (/opt/python/cp3XX-cp3XX/...). CMake refuses to generate a build that
# uses an imported target with a missing include directory. This file removes such directories
# from every imported target of the including directory, at the very end of its configure step
# (cmake_language(DEFER)), so that targets imported later inside rosidl_generate_interfaces() are
# covered too. Generator expressions are kept as they are.
#
# On a regular ROS 2 installation every listed directory exists, so nothing changes.
# Include it right after project(); needs CMake >= 3.21 (DEFER, IMPORTED_TARGETS).

function(_alpamayo_prune_missing_interface_includes)
  get_directory_property(_targets DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" IMPORTED_TARGETS)
  set(_pruned_total 0)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs "${_target}" INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_existing "")
    set(_pruned_here 0)
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^\\$<" OR IS_DIRECTORY "${_dir}")
        list(APPEND _existing "${_dir}")
      else()
        math(EXPR _pruned_here "${_pruned_here} + 1")
      endif()
    endforeach()
    if(_pruned_here GREATER 0)
      set_property(TARGET "${_target}" PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${_existing}")
      math(EXPR _pruned_total "${_pruned_total} + ${_pruned_here}")
    endif()
  endforeach()
  if(_pruned_total GREATER 0)
    message(STATUS "pypi_ros_wheels_fix: dropped ${_pruned_total} non-existent include "
      "directories from imported targets (PyPI ROS wheels)")
  endif()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}"
  CALL _alpamayo_prune_missing_interface_includes)
