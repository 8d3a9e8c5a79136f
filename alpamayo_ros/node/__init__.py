"""The lifecycle node and the pure modules it runs on: parameters, buffers, frame sync, ego
history, image conversion, status rules, messages. Never imports `alpamayo_ros.tools`."""
